package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails" // also registers the detail types the error bodies print
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// APIPrefix is where the JSON API lives. (/v1/ is the Consul-compatible
// API's.)
const APIPrefix = "/api/v1/"

// maxBodyBytes bounds a JSON request body; the gRPC server bounds the
// message it decodes to again.
const maxBodyBytes = 4 << 20

// jsonOptions print messages the way the JSON API documents them: proto
// field names (snake_case), every field present, 64-bit numbers as
// strings (protojson's rule).
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

func init() {
	// The gateway keeps its query parser in a package variable; it is set
	// once here, never while requests are served.
	runtime.NewServeMux(runtime.SetQueryParameterParser(queryParser{}))
}

// mountGateway serves the routes generated from the google.api.http
// annotations of proto/roster/v1 under APIPrefix, plus the watch streams as
// server-sent events. The gateway is a gRPC client of this node (client
// mode, over Config.Conn), so every call passes through the server's
// interceptors, validation and forwarding like any other client's.
func (h *Handler) mountGateway(ctx context.Context) error {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &jsonMarshaler{runtime.JSONPb{
			MarshalOptions:   jsonOptions,
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		runtime.WithErrorHandler(gatewayError),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		// No request header but Authorization (which the gateway always
		// passes on) becomes call metadata: the calls need no other, a
		// Grpc-Metadata-* header could name anything, and gRPC refuses a
		// value that is not printable ASCII (a User-Agent or a cookie in
		// UTF-8), which would fail the call as a 500.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMetadata(clientAddrMetadata),
	)
	if err := rosterv1.RegisterRegistryHandlerClient(ctx, gw, h.registry); err != nil {
		return fmt.Errorf("registry routes: %w", err)
	}
	if err := rosterv1.RegisterClusterHandlerClient(ctx, gw, h.cluster); err != nil {
		return fmt.Errorf("cluster routes: %w", err)
	}
	h.mux.Handle(APIPrefix, http.MaxBytesHandler(bodyKeysAgree(gw), maxBodyBytes))
	h.mux.HandleFunc("GET "+APIPrefix+"watch", h.watch)
	h.mux.HandleFunc("GET "+APIPrefix+"watch/namespaces", h.watchNamespaces)
	for _, p := range []string{"watch", "watch/namespaces"} {
		h.mux.HandleFunc(APIPrefix+p, func(w http.ResponseWriter, r *http.Request) {
			writeError(w, status.Errorf(codes.Unimplemented, "method %s not allowed on %s", r.Method, r.URL.Path), http.StatusMethodNotAllowed)
		})
	}
	return nil
}

// bodyKeysAgree refuses a PUT /api/v1/services/{namespace}/{service}/instances/{id}
// whose body names a namespace, service or id other than its path does:
// the gateway would take the path's and ignore the body's silently. The
// body is read (bounded by the MaxBytesHandler around this one) and handed
// on as it came.
func bodyKeysAgree(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seg := strings.Split(strings.TrimPrefix(r.URL.Path, APIPrefix), "/")
		if r.Method != http.MethodPut || len(seg) != 5 || seg[0] != "services" || seg[3] != "instances" {
			next.ServeHTTP(w, r)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeError(w, status.Errorf(codes.InvalidArgument, "request body larger than %d bytes", maxBodyBytes), http.StatusRequestEntityTooLarge)
				return
			}
			writeError(w, status.Errorf(codes.InvalidArgument, "reading the request body: %v", err), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		var fields map[string]json.RawMessage
		if json.Unmarshal(b, &fields) == nil {
			for _, k := range []struct{ name, path string }{{"namespace", seg[1]}, {"service", seg[2]}, {"id", seg[4]}} {
				var v string
				if raw, ok := fields[k.name]; !ok || json.Unmarshal(raw, &v) != nil || v == "" || v == k.path {
					continue
				}
				writeError(w, status.Errorf(codes.InvalidArgument,
					"body field %s is %q but the path names %s %q; leave it out of the body or make them agree", k.name, v, k.name, k.path), http.StatusBadRequest)
				return
			}
		}
		// Anything else, malformed bodies included, is the gateway's to judge.
		next.ServeHTTP(w, r)
	})
}

// errorBody is the JSON body of every error the JSON API answers:
//
//	{"code": 3, "status": "INVALID_ARGUMENT", "message": "...", "details": [...]}
//
// code and status are the gRPC code as a number and as its name; details
// are the status details (such as google.rpc.ErrorInfo with the reason) in
// protojson, each with its "@type".
type errorBody struct {
	Code    int32             `json:"code"`
	Status  string            `json:"status"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

func newErrorBody(st *status.Status) errorBody {
	b := errorBody{
		Code:    int32(st.Code()),
		Status:  code.Code(st.Code()).String(),
		Message: st.Message(),
		Details: []json.RawMessage{},
	}
	for _, d := range st.Proto().GetDetails() {
		raw, err := protojson.Marshal(d)
		if err != nil {
			continue
		}
		b.Details = append(b.Details, raw)
	}
	return b
}

// writeError answers err as its gRPC status: the HTTP status the gateway
// maps the code to (400 for InvalidArgument, 404 NotFound, 503
// Unavailable, ...) unless httpStatus is set, and an errorBody.
func writeError(w http.ResponseWriter, err error, httpStatus int) {
	st := status.Convert(err)
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(st.Code())
	}
	setRetryAfter(w, httpStatus, st)
	w.Header().Del("Trailer")
	w.Header().Del("Transfer-Encoding")
	writeJSON(w, httpStatus, newErrorBody(st))
}

// setRetryAfter sets Retry-After on a 429: the whole seconds of the
// status's RetryInfo (a rate limit's says when the client's bucket holds
// the tokens the call asked for), rounded up, else 1.
func setRetryAfter(w http.ResponseWriter, httpStatus int, st *status.Status) {
	if httpStatus != http.StatusTooManyRequests {
		return
	}
	secs := int64(1)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			secs = max(1, int64(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())))
		}
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}

// gatewayError is the gateway's error handler.
func gatewayError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) || strings.Contains(status.Convert(err).Message(), "request body too large") {
		writeError(w, status.Errorf(codes.InvalidArgument, "request body larger than %d bytes", maxBodyBytes), http.StatusRequestEntityTooLarge)
		return
	}
	var hs *runtime.HTTPStatusError
	if errors.As(err, &hs) {
		writeError(w, hs.Err, hs.HTTPStatus)
		return
	}
	writeError(w, err, 0)
}

// routingError answers a path or method the JSON API does not have.
func routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusNotFound:
		writeError(w, status.Errorf(codes.NotFound, "no such endpoint: %s %s", r.Method, r.URL.Path), httpStatus)
	case http.StatusMethodNotAllowed:
		writeError(w, status.Errorf(codes.Unimplemented, "method %s not allowed on %s", r.Method, r.URL.Path), httpStatus)
	case http.StatusBadRequest:
		writeError(w, status.Errorf(codes.InvalidArgument, "bad request path %s", r.URL.Path), httpStatus)
	default:
		writeError(w, status.Errorf(codes.Internal, "routing error %d on %s %s", httpStatus, r.Method, r.URL.Path), httpStatus)
	}
}

// jsonMarshaler is the gateway's JSONPb whose decoder says that a body
// it cannot read is not valid JSON for the call (the gateway turns any
// decode error into InvalidArgument with this message), and refuses a body
// with anything but white space after its one JSON value.
type jsonMarshaler struct{ runtime.JSONPb }

func (m *jsonMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	d := m.JSONPb.NewDecoder(r)
	var rest *json.Decoder
	if dw, ok := d.(runtime.DecoderWrapper); ok {
		rest = dw.Decoder
	}
	return runtime.DecoderFunc(func(v any) error {
		err := d.Decode(v)
		if err == nil && rest != nil {
			// The gateway decodes a body once; what follows its value
			// would otherwise be ignored and the call made anyway.
			if _, terr := rest.Token(); terr != io.EOF {
				err = errors.New("unexpected data after the JSON value")
				var tooLarge *http.MaxBytesError
				if errors.As(terr, &tooLarge) {
					err = terr
				}
			}
		}
		if err == nil || errors.Is(err, io.EOF) {
			return err
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		name := "message"
		if msg, ok := v.(proto.Message); ok {
			name = string(msg.ProtoReflect().Descriptor().Name())
		}
		return fmt.Errorf("invalid JSON body for %s: %v", name, err)
	})
}

// queryParser is the gateway's query parser, stricter and friendlier than
// its default: a parameter that names no field of the request is refused
// (a misspelt filter would otherwise be ignored silently), and a request
// with ReadOptions takes the short forms consistency=stale|linearizable
// and min_revision=N beside read.consistency=CONSISTENCY_STALE and
// read.min_revision=N.
type queryParser struct{}

func (queryParser) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	values, err := normalizeQuery(msg.ProtoReflect().Descriptor(), values)
	if err != nil {
		return err
	}
	return (&runtime.DefaultQueryParser{}).Parse(msg, values, filter)
}

// readOptionsName is the full name of the message that carries a read's
// consistency.
var readOptionsName = (&rosterv1.ReadOptions{}).ProtoReflect().Descriptor().FullName()

// normalizeQuery rewrites the short forms of read options onto the field
// of md that holds them, spells consistency values as the enum does, and
// refuses parameters that name no field of md.
func normalizeQuery(md protoreflect.MessageDescriptor, values url.Values) (url.Values, error) {
	var readField string
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Message() != nil && f.Message().FullName() == readOptionsName {
			readField = string(f.Name())
			break
		}
	}
	out := make(url.Values, len(values))
	for key, vals := range values {
		target := key
		if readField != "" {
			switch key {
			case "consistency":
				target = readField + ".consistency"
			case "min_revision", "minRevision":
				target = readField + ".min_revision"
			}
		}
		if !hasFieldPath(md, target) {
			return nil, fmt.Errorf("unknown query parameter %q", key)
		}
		if strings.HasSuffix(target, ".consistency") {
			var err error
			if vals, err = normalizeConsistency(key, vals); err != nil {
				return nil, err
			}
		}
		if _, dup := out[target]; dup {
			return nil, fmt.Errorf("query parameter %q given twice (as %s)", target, key)
		}
		out[target] = vals
	}
	return out, nil
}

// normalizeConsistency accepts stale, STALE and CONSISTENCY_STALE (and
// the enum's numbers) alike.
func normalizeConsistency(key string, vals []string) ([]string, error) {
	out := make([]string, len(vals))
	for i, v := range vals {
		u := strings.ToUpper(strings.TrimSpace(v))
		if !strings.HasPrefix(u, "CONSISTENCY_") {
			if _, err := strconv.Atoi(u); err != nil {
				u = "CONSISTENCY_" + u
			}
		}
		if _, ok := rosterv1.Consistency_value[u]; !ok {
			if _, err := strconv.Atoi(u); err != nil {
				return nil, fmt.Errorf("query parameter %s=%q: want linearizable or stale", key, v)
			}
		}
		out[i] = u
	}
	return out, nil
}

// outgoingHeader passes the node's gRPC response metadata on as
// Grpc-Metadata-* headers, all but its content type (always
// application/grpc, which would only confuse an HTTP client).
func outgoingHeader(key string) (string, bool) {
	if strings.EqualFold(key, "content-type") {
		return "", false
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// hasFieldPath reports whether key (a.b.c, proto or JSON names, a map key
// in brackets allowed at the end) names a field of md.
func hasFieldPath(md protoreflect.MessageDescriptor, key string) bool {
	if i := strings.IndexByte(key, '['); i > 0 && strings.HasSuffix(key, "]") {
		key = key[:i]
	}
	parts := strings.Split(key, ".")
	for i, p := range parts {
		if md == nil {
			return false
		}
		f := md.Fields().ByName(protoreflect.Name(p))
		if f == nil {
			f = md.Fields().ByJSONName(p)
		}
		if f == nil {
			return false
		}
		if i < len(parts)-1 {
			md = f.Message()
		}
	}
	return true
}
