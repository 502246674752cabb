package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// instanceJSON is an instance as -o json prints it.
type instanceJSON struct {
	Namespace      string            `json:"namespace"`
	Service        string            `json:"service"`
	ID             string            `json:"id"`
	Address        string            `json:"address"`
	Port           uint32            `json:"port"`
	Tags           []string          `json:"tags"`
	Metadata       map[string]string `json:"metadata"`
	Weight         uint32            `json:"weight"`
	Zone           string            `json:"zone"`
	Status         string            `json:"status"`
	StatusReason   string            `json:"status_reason"`
	Enabled        bool              `json:"enabled"`
	CreateRevision uint64            `json:"create_revision"`
	ModRevision    uint64            `json:"mod_revision"`
}

// revisionJSON is what writes print with -o json.
type revisionJSON struct {
	Revision uint64 `json:"revision"`
}

func newInstanceJSON(in *rosterv1.Instance) instanceJSON {
	tags := in.GetTags()
	if tags == nil {
		tags = []string{}
	}
	meta := in.GetMetadata()
	if meta == nil {
		meta = map[string]string{}
	}
	return instanceJSON{
		Namespace:      in.GetNamespace(),
		Service:        in.GetService(),
		ID:             in.GetId(),
		Address:        in.GetAddress(),
		Port:           in.GetPort(),
		Tags:           tags,
		Metadata:       meta,
		Weight:         in.GetWeight(),
		Zone:           in.GetZone(),
		Status:         statusWord(in.GetStatus()),
		StatusReason:   in.GetStatusReason(),
		Enabled:        in.GetEnabled(),
		CreateRevision: in.GetCreateRevision(),
		ModRevision:    in.GetModRevision(),
	}
}

func instancesJSON(ins []*rosterv1.Instance) []instanceJSON {
	out := make([]instanceJSON, 0, len(ins))
	for _, in := range ins {
		out = append(out, newInstanceJSON(in))
	}
	return out
}

// heldReasonPrefix starts the status reason of an instance whose lease
// expiry self-preservation holds (the server's cluster.ReasonHeldPrefix).
const heldReasonPrefix = "held by self-preservation"

// healthWord is an instance's status, with ",held" when self-preservation
// holds its lease expiry: it looks passing, but has stopped heartbeating.
func healthWord(in *rosterv1.Instance) string {
	w := statusWord(in.GetStatus())
	if strings.HasPrefix(in.GetStatusReason(), heldReasonPrefix) {
		w += ",held"
	}
	return w
}

// statusWord spells a health status as one lowercase word.
func statusWord(s rosterv1.HealthStatus) string {
	switch s {
	case rosterv1.HealthStatus_HEALTH_STATUS_PASSING:
		return "passing"
	case rosterv1.HealthStatus_HEALTH_STATUS_WARNING:
		return "warning"
	case rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL:
		return "critical"
	}
	return "unknown"
}

// writeJSON prints v as one line of JSON, spaced as `{"key": value, ...}`.
func writeJSON(w io.Writer, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	_, err := w.Write(spaced(buf.Bytes()))
	return err
}

// spaced adds a space after every ':' and ',' of compact JSON that is not
// inside a string.
func spaced(compact []byte) []byte {
	out := make([]byte, 0, len(compact)+len(compact)/4)
	inString, escaped := false, false
	for _, b := range compact {
		out = append(out, b)
		switch {
		case escaped:
			escaped = false
		case inString && b == '\\':
			escaped = true
		case b == '"':
			inString = !inString
		case !inString && (b == ':' || b == ','):
			out = append(out, ' ')
		}
	}
	return out
}

// table writes aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error {
	return t.tw.Flush()
}

// key names an instance in table output: service/id, with the namespace in
// front when it is not the default one.
func key(namespace, service, id string) string {
	if namespace == "" || namespace == "default" {
		return service + "/" + id
	}
	return namespace + "/" + service + "/" + id
}

// endpoint is an instance's HOST:PORT.
func endpoint(in *rosterv1.Instance) string {
	return net.JoinHostPort(in.GetAddress(), strconv.FormatUint(uint64(in.GetPort()), 10))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
