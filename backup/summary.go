package backup

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protodelim"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// maxRecordSize bounds one record of a body, as the state machine does.
const maxRecordSize = 16 << 20

// Summary counts what a snapshot body holds.
type Summary struct {
	// Revision and AppliedIndex are the body's own header's.
	Revision     uint64
	AppliedIndex uint64
	Namespaces   int
	Services     int
	Instances    int
	Members      int
	Tokens       int
	Requests     int
	// Records is the number of records before the end record.
	Records uint64
}

// Summarize reads a snapshot body to its end record and counts what it
// holds. A body cut short or holding a record that does not decode is an
// ErrInvalid error.
func Summarize(body io.Reader) (Summary, error) {
	br := bufio.NewReaderSize(body, 256<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: maxRecordSize}
	var hdr raftcmdv1.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return Summary{}, fmt.Errorf("%w: body header: %v", ErrInvalid, err)
	}
	s := Summary{Revision: hdr.Revision, AppliedIndex: hdr.AppliedIndex}
	namespaces := map[string]bool{}
	services := map[[2]string]bool{}
	for {
		var rec raftcmdv1.SnapshotRecord
		if err := opts.UnmarshalFrom(br, &rec); err != nil {
			if errors.Is(err, io.EOF) {
				return Summary{}, fmt.Errorf("%w: body ends after %d records without its end record", ErrInvalid, s.Records)
			}
			return Summary{}, fmt.Errorf("%w: record %d: %v", ErrInvalid, s.Records, err)
		}
		switch r := rec.Record.(type) {
		case *raftcmdv1.SnapshotRecord_Instance:
			s.Instances++
			namespaces[r.Instance.GetNamespace()] = true
			services[[2]string{r.Instance.GetNamespace(), r.Instance.GetService()}] = true
		case *raftcmdv1.SnapshotRecord_Member:
			s.Members++
		case *raftcmdv1.SnapshotRecord_AclToken:
			s.Tokens++
		case *raftcmdv1.SnapshotRecord_Request:
			s.Requests++
		case *raftcmdv1.SnapshotRecord_End:
			if r.End.GetRecords() != s.Records {
				return Summary{}, fmt.Errorf("%w: end record says %d records, read %d", ErrInvalid, r.End.GetRecords(), s.Records)
			}
			s.Namespaces, s.Services = len(namespaces), len(services)
			return s, nil
		}
		s.Records++
	}
}
