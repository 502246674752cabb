// Package backup is the format of a Roster snapshot file, the file
// `roster snapshot save` writes and `roster snapshot restore` reads:
//
//	header   magic "RSTRSNAP" (8 bytes), format version (uint32),
//	         registry revision (uint64), applied index (uint64),
//	         created time in Unix nanoseconds (int64); big-endian, 36 bytes
//	body     the state machine's snapshot stream, exactly as a node
//	         persists it for Raft (fsm/snapshot.go)
//	trailer  body length (uint64), SHA-256 of header and body (32 bytes),
//	         magic "RSTREND1" (8 bytes); 48 bytes
//
// The checksum covers the header too, so a file whose revision was edited
// fails like one whose body was. A file cut short loses its trailer, and a
// reader finds the length, checksum or end magic wrong.
package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Magic opens every snapshot file; EndMagic closes it.
const (
	Magic    = "RSTRSNAP"
	EndMagic = "RSTREND1"
)

// FormatVersion is the version of the file layout this package writes and
// reads.
const FormatVersion = 1

// HeaderSize and TrailerSize are the fixed sizes of the header and trailer.
const (
	HeaderSize  = 8 + 4 + 8 + 8 + 8
	TrailerSize = 8 + sha256.Size + 8
)

// ErrInvalid marks a file that is not a whole, intact snapshot file.
var ErrInvalid = errors.New("invalid snapshot file")

// Header is what a snapshot file says about itself.
type Header struct {
	Version      uint32
	Revision     uint64
	AppliedIndex uint64
	Created      time.Time
}

func (h Header) encode() []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint32(b, h.Version)
	b = binary.BigEndian.AppendUint64(b, h.Revision)
	b = binary.BigEndian.AppendUint64(b, h.AppliedIndex)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Created.UnixNano()))
	return b
}

// DecodeHeader parses the first HeaderSize bytes of a file.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes is shorter than a header", ErrInvalid, len(b))
	}
	if string(b[:8]) != Magic {
		return Header{}, fmt.Errorf("%w: not a Roster snapshot (magic %q)", ErrInvalid, b[:8])
	}
	h := Header{
		Version:      binary.BigEndian.Uint32(b[8:12]),
		Revision:     binary.BigEndian.Uint64(b[12:20]),
		AppliedIndex: binary.BigEndian.Uint64(b[20:28]),
		Created:      time.Unix(0, int64(binary.BigEndian.Uint64(b[28:36]))).UTC(),
	}
	if h.Version != FormatVersion {
		return Header{}, fmt.Errorf("%w: format version %d, this build reads %d", ErrInvalid, h.Version, FormatVersion)
	}
	return h, nil
}

// Writer writes one snapshot file: the header at once, the body as it is
// written, the trailer at Close.
type Writer struct {
	w    io.Writer
	sum  hash.Hash
	body uint64
}

// NewWriter writes h (with the current format version) to w and returns a
// Writer for the body.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	h.Version = FormatVersion
	fw := &Writer{w: w, sum: sha256.New()}
	hb := h.encode()
	fw.sum.Write(hb)
	if _, err := w.Write(hb); err != nil {
		return nil, fmt.Errorf("write snapshot header: %w", err)
	}
	return fw, nil
}

// Write appends body bytes.
func (fw *Writer) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	fw.sum.Write(p[:n])
	fw.body += uint64(n)
	return n, err
}

// BodySize is the number of body bytes written so far.
func (fw *Writer) BodySize() uint64 { return fw.body }

// Close writes the trailer and returns the file's checksum. It does not
// close the underlying writer.
func (fw *Writer) Close() ([]byte, error) {
	sum := fw.sum.Sum(nil)
	t := make([]byte, 0, TrailerSize)
	t = binary.BigEndian.AppendUint64(t, fw.body)
	t = append(t, sum...)
	t = append(t, EndMagic...)
	if _, err := fw.w.Write(t); err != nil {
		return nil, fmt.Errorf("write snapshot trailer: %w", err)
	}
	return sum, nil
}

// Info is what Verify learns about a file.
type Info struct {
	Header
	// Size is the whole file's size; BodySize the body's.
	Size     int64
	BodySize int64
	// Checksum is the SHA-256 of header and body, as the trailer holds it
	// and as recomputed.
	Checksum []byte
}

// Verify reads a whole snapshot file of size bytes from r and checks its
// header, length and checksum. Nothing of it may be trusted before Verify
// returns nil.
func Verify(r io.ReaderAt, size int64) (Info, error) {
	if size < HeaderSize+TrailerSize {
		return Info{}, fmt.Errorf("%w: %d bytes is shorter than a header and a trailer (truncated?)", ErrInvalid, size)
	}
	hb := make([]byte, HeaderSize)
	if _, err := r.ReadAt(hb, 0); err != nil {
		return Info{}, fmt.Errorf("read snapshot header: %w", err)
	}
	h, err := DecodeHeader(hb)
	if err != nil {
		return Info{}, err
	}
	tb := make([]byte, TrailerSize)
	if _, err := r.ReadAt(tb, size-TrailerSize); err != nil {
		return Info{}, fmt.Errorf("read snapshot trailer: %w", err)
	}
	body := size - HeaderSize - TrailerSize
	if string(tb[TrailerSize-8:]) != EndMagic {
		return Info{}, fmt.Errorf("%w: no end marker; the file is truncated or damaged", ErrInvalid)
	}
	if n := binary.BigEndian.Uint64(tb[:8]); n != uint64(body) {
		return Info{}, fmt.Errorf("%w: the trailer says the body has %d bytes, the file holds %d (truncated?)", ErrInvalid, n, body)
	}
	want := tb[8 : 8+sha256.Size]
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(r, 0, HeaderSize+body)); err != nil {
		return Info{}, fmt.Errorf("read snapshot: %w", err)
	}
	got := sum.Sum(nil)
	if !bytes.Equal(got, want) {
		return Info{}, fmt.Errorf("%w: checksum mismatch: the file says %x, its contents hash to %x", ErrInvalid, want, got)
	}
	return Info{Header: h, Size: size, BodySize: body, Checksum: got}, nil
}

// Body returns a reader of the body of a file Verify accepted.
func Body(r io.ReaderAt, info Info) *io.SectionReader {
	return io.NewSectionReader(r, HeaderSize, info.BodySize)
}
