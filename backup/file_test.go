package backup

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
)

// body is a small valid snapshot body: two instances of one service, one
// of another namespace, and a member.
func body(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	recs := []*raftcmdv1.SnapshotRecord{
		{Record: &raftcmdv1.SnapshotRecord_Instance{Instance: &raftcmdv1.Instance{Namespace: "default", Service: "web", Id: "a"}}},
		{Record: &raftcmdv1.SnapshotRecord_Instance{Instance: &raftcmdv1.Instance{Namespace: "default", Service: "web", Id: "b"}}},
		{Record: &raftcmdv1.SnapshotRecord_Instance{Instance: &raftcmdv1.Instance{Namespace: "prod", Service: "db", Id: "c"}}},
		{Record: &raftcmdv1.SnapshotRecord_Member{Member: &raftcmdv1.Member{NodeId: "n1"}}},
	}
	if _, err := protodelim.MarshalTo(&b, &raftcmdv1.SnapshotHeader{Version: 1, Revision: 42, AppliedIndex: 43}); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := protodelim.MarshalTo(&b, r); err != nil {
			t.Fatal(err)
		}
	}
	end := &raftcmdv1.SnapshotRecord{Record: &raftcmdv1.SnapshotRecord_End{End: &raftcmdv1.SnapshotEnd{Records: uint64(len(recs))}}}
	if _, err := protodelim.MarshalTo(&b, end); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func file(t *testing.T) []byte {
	t.Helper()
	var f bytes.Buffer
	w, err := NewWriter(&f, Header{Revision: 42, AppliedIndex: 43, Created: time.Unix(1700000000, 5)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Bytes()
}

func TestRoundTripAndSummary(t *testing.T) {
	f := file(t)
	info, err := Verify(bytes.NewReader(f), int64(len(f)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != 42 || info.AppliedIndex != 43 || info.Created.UnixNano() != 1700000000_000000005 || info.Version != FormatVersion {
		t.Fatalf("header %+v", info.Header)
	}
	if info.BodySize != int64(len(body(t))) {
		t.Fatalf("body size %d, want %d", info.BodySize, len(body(t)))
	}
	s, err := Summarize(Body(bytes.NewReader(f), info))
	if err != nil {
		t.Fatal(err)
	}
	if s.Instances != 3 || s.Services != 2 || s.Namespaces != 2 || s.Members != 1 || s.Revision != 42 {
		t.Fatalf("summary %+v", s)
	}
}

func TestDamagedFilesAreRefused(t *testing.T) {
	good := file(t)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	cases := map[string][]byte{
		"empty":             nil,
		"header only":       good[:HeaderSize],
		"truncated body":    good[:len(good)/2],
		"trailer cut":       good[:len(good)-1],
		"flipped body byte": flip(HeaderSize + 5),
		"edited revision":   flip(19),
		"wrong magic":       flip(0),
		"flipped checksum":  flip(len(good) - 20),
		"extra byte":        append(bytes.Clone(good), 0),
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(f), int64(len(f)))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Verify = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestSummarizeRefusesACutBody(t *testing.T) {
	b := body(t)
	if _, err := Summarize(bytes.NewReader(b[:len(b)-3])); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Summarize = %v, want ErrInvalid", err)
	}
}
