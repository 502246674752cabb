package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/grpc/metadata"

	"github.com/roster-registry/roster/rpc"
)

// withClientAddr names the HTTP client (its remote address) to the gRPC
// services on every call a request makes, so their per-client rate and
// watcher limits count that client, not this front end.
func withClientAddr(r *http.Request) *http.Request {
	if r.RemoteAddr == "" {
		return r
	}
	return r.WithContext(rpc.WithClientAddr(r.Context(), r.RemoteAddr))
}

// decodeConsulBody decodes the JSON body of a Consul-compatible request
// into v. A body over maxConsulBody is refused with 413, one that is not a
// single JSON value of v's shape with 400; either says why.
func decodeConsulBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeJSONBody(http.MaxBytesReader(w, r.Body, maxConsulBody), v)
}

func decodeJSONBody(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	err := dec.Decode(v)
	if err == nil {
		// One value only: trailing data is a malformed request too.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON value")
		}
	}
	if err == nil {
		return nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &consulError{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit)}
	}
	return badRequest("request decode failed: %v", err)
}

// clientAddrMetadata is the gateway's annotator naming the HTTP client: the
// gateway builds each call's metadata afresh, and an annotator's value
// replaces any the client sent as a header.
func clientAddrMetadata(_ context.Context, r *http.Request) metadata.MD {
	return metadata.Pairs(rpc.ClientAddrKey, r.RemoteAddr)
}
