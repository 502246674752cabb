package httpapi

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/rpc"
)

// maxConsulBody bounds a Consul request body.
const maxConsulBody = 1 << 20

// maxCheckOutput is the longest check output kept (the Registry's limit on
// a status reason); longer output is cut, as Consul cuts it.
const maxCheckOutput = 1024

// consulServiceRegistration is the body of PUT /v1/agent/service/register.
// Fields Roster cannot honour are decoded so they can be refused by name.
type consulServiceRegistration struct {
	Kind              string
	ID                string
	Name              string
	Tags              []string
	Port              int
	Ports             json.RawMessage
	Address           string
	SocketPath        string
	TaggedAddresses   map[string]json.RawMessage
	EnableTagOverride bool
	Meta              map[string]string
	Weights           *struct{ Passing, Warning int }
	Check             *consulServiceCheck
	Checks            []*consulServiceCheck
	Proxy             json.RawMessage
	Connect           json.RawMessage
	Namespace         string
	Partition         string
	Locality          json.RawMessage

	// Consul's service decoding takes this snake_case key too.
	TaggedAddressesSnake map[string]json.RawMessage `json:"tagged_addresses"`
}

// consulServiceCheck is one check of a registration.
type consulServiceCheck struct {
	CheckID                        string
	Name                           string
	ScriptArgs                     []string
	Args                           []string
	DockerContainerID              string
	Shell                          string
	Interval                       consulDuration
	Timeout                        consulDuration
	TTL                            consulDuration
	HTTP                           string
	Header                         map[string][]string
	Method                         string
	Body                           string
	TCP                            string
	TCPUseTLS                      bool
	UDP                            string
	Status                         string
	Notes                          string
	TLSServerName                  string
	TLSSkipVerify                  bool
	GRPC                           string
	GRPCUseTLS                     bool
	H2PING                         string
	AliasNode                      string
	AliasService                   string
	OSService                      string
	SuccessBeforePassing           int
	FailuresBeforeWarning          int
	FailuresBeforeCritical         int
	DeregisterCriticalServiceAfter consulDuration

	// Consul's check decoding also takes these snake_case keys (those of
	// its configuration files); foldSnake folds them into the fields above.
	ScriptArgsSnake                     []string       `json:"script_args"`
	DeregisterCriticalServiceAfterSnake consulDuration `json:"deregister_critical_service_after"`
	DockerContainerIDSnake              string         `json:"docker_container_id"`
	TLSServerNameSnake                  string         `json:"tls_server_name"`
	TLSSkipVerifySnake                  bool           `json:"tls_skip_verify"`
	GRPCUseTLSSnake                     bool           `json:"grpc_use_tls"`
}

// foldSnake gives the snake_case keys their CamelCase fields' meaning; as
// in Consul, a CamelCase value given too wins.
func (ch *consulServiceCheck) foldSnake() {
	if len(ch.ScriptArgs) == 0 {
		ch.ScriptArgs = ch.ScriptArgsSnake
	}
	if !ch.DeregisterCriticalServiceAfter.set {
		ch.DeregisterCriticalServiceAfter = ch.DeregisterCriticalServiceAfterSnake
	}
	if ch.DockerContainerID == "" {
		ch.DockerContainerID = ch.DockerContainerIDSnake
	}
	if ch.TLSServerName == "" {
		ch.TLSServerName = ch.TLSServerNameSnake
	}
	ch.TLSSkipVerify = ch.TLSSkipVerify || ch.TLSSkipVerifySnake
	ch.GRPCUseTLS = ch.GRPCUseTLS || ch.GRPCUseTLSSnake
}

// rawSet reports whether a raw JSON field carries a value.
func rawSet(m json.RawMessage) bool {
	s := strings.TrimSpace(string(m))
	return s != "" && s != "null" && s != "{}" && s != "[]"
}

// register maps a Consul service registration onto Registry.Register.
func (c *consulAPI) register(w http.ResponseWriter, r *http.Request) {
	var reg consulServiceRegistration
	if err := decodeConsulBody(w, r, &reg); err != nil {
		writeConsulError(w, err)
		return
	}
	inst, err := c.instance(&reg, r)
	if err != nil {
		writeConsulError(w, err)
		return
	}
	if err := c.checkRegistration(r.Context(), inst.Namespace, inst.Service, inst.Id); err != nil {
		writeConsulError(w, err)
		return
	}
	if _, err := c.h.registry.Register(r.Context(), &rosterv1.RegisterRequest{Instance: inst}); err != nil {
		writeConsulError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// instance turns a registration into a Roster instance, or says which of
// its fields Roster does not support. Validation of what remains (names,
// sizes, durations) is the Registry's.
func (c *consulAPI) instance(reg *consulServiceRegistration, r *http.Request) (*rosterv1.Instance, error) {
	switch {
	case reg.Kind != "" && reg.Kind != "typical":
		return nil, badRequest("Kind %q is not supported: Roster registers plain services, not Connect proxies or gateways", reg.Kind)
	case rawSet(reg.Proxy), rawSet(reg.Connect):
		return nil, badRequest("Proxy and Connect are not supported: Roster has no service mesh")
	case reg.SocketPath != "":
		return nil, badRequest("SocketPath is not supported: an instance is an address and a port")
	case len(reg.TaggedAddresses) > 0 || len(reg.TaggedAddressesSnake) > 0:
		return nil, badRequest("TaggedAddresses are not supported: an instance has one address")
	case rawSet(reg.Ports):
		return nil, badRequest("Ports are not supported: an instance has one port")
	case rawSet(reg.Locality):
		return nil, badRequest("Locality is not supported")
	case reg.Partition != "" && reg.Partition != "default":
		return nil, badRequest("Partition %q is not supported; Roster has namespaces only", reg.Partition)
	case reg.Name == "":
		return nil, badRequest("missing service name")
	}
	ns := reg.Namespace
	if ns == "" {
		ns = namespace(r)
	}
	id := reg.ID
	if id == "" {
		id = reg.Name
	}
	addr := reg.Address
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")); err == nil && ip.Unmap().IsUnspecified() {
		// 0.0.0.0 or ::, a bind address, names no host to reach the
		// service on; Consul refuses it in the same words.
		return nil, badRequest("Invalid service address %q: an unspecified address names no host to reach the service on", addr)
	}
	if addr == "" {
		// Consul uses its agent's address, the host the service runs on;
		// the caller's address is the nearest Roster knows.
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			addr = host
		}
	}
	switch {
	case reg.Port == 0:
		// Consul's Port is optional; a Roster instance is an address and
		// a port, so a registration needs one.
		return nil, badRequest("Port is required: a Roster instance is an address and a port (1-65535)")
	case reg.Port < 0 || reg.Port > 65535:
		return nil, badRequest("Port %d is out of range 1-65535", reg.Port)
	}
	inst := &rosterv1.Instance{
		Namespace: ns, Service: reg.Name, Id: id, Address: addr, Port: uint32(reg.Port),
		Tags: reg.Tags, Metadata: reg.Meta,
	}
	if reg.Weights != nil {
		// 0 is Roster's default weight; anything else must fit Roster's
		// range before it is narrowed to 32 bits.
		if reg.Weights.Passing < 0 || reg.Weights.Passing > rpc.MaxWeight {
			return nil, badRequest("Weights.Passing %d is out of range 1-%d", reg.Weights.Passing, rpc.MaxWeight)
		}
		inst.Weight = uint32(reg.Weights.Passing)
	}
	var checks []*consulServiceCheck
	// Consul skips a Check with nothing in it (the real client sends
	// "Check":{} for an AgentServiceCheck left empty); an empty one among
	// Checks stays an error, as in Consul.
	if reg.Check != nil && !reflect.ValueOf(*reg.Check).IsZero() {
		checks = append(checks, reg.Check)
	}
	for _, ch := range reg.Checks {
		if ch != nil {
			checks = append(checks, ch)
		}
	}
	for i, ch := range checks {
		want := "service:" + id
		if len(checks) > 1 {
			want = fmt.Sprintf("service:%s:%d", id, i+1)
		}
		if err := applyCheck(inst, ch, want); err != nil {
			return nil, err
		}
	}
	if inst.Ttl != nil && inst.DeregisterCriticalAfter == nil {
		// Consul keeps a TTL check that missed its heartbeat, critical,
		// until a pass revives it; Roster removes a TTL instance at expiry
		// unless told how long to keep it critical: the longest it allows.
		inst.DeregisterCriticalAfter = durationpb.New(rpc.MaxCriticalAfter)
	}
	return inst, nil
}

// applyCheck adds one Consul check to inst: a TTL becomes the lease, an
// HTTP, TCP or gRPC check the active check. Roster keeps at most one of each.
func applyCheck(inst *rosterv1.Instance, ch *consulServiceCheck, wantID string) error {
	ch.foldSnake()
	switch {
	case ch.CheckID != "" && ch.CheckID != wantID:
		return badRequest("CheckID %q is not supported: Roster names an instance's check %q, as Consul does by default", ch.CheckID, wantID)
	case len(ch.ScriptArgs) > 0 || len(ch.Args) > 0 || ch.DockerContainerID != "" || ch.Shell != "":
		return badRequest("script and Docker checks are not supported: Roster runs TTL, HTTP, TCP and gRPC checks")
	case ch.H2PING != "", ch.UDP != "", ch.OSService != "", ch.AliasNode != "", ch.AliasService != "":
		return badRequest("H2PING, UDP, OSService and alias checks are not supported: Roster runs TTL, HTTP, TCP and gRPC checks")
	case ch.Method != "" && !strings.EqualFold(ch.Method, http.MethodGet):
		return badRequest("HTTP check Method %q is not supported: Roster's HTTP checks send GET", ch.Method)
	case len(ch.Header) > 0 || ch.Body != "":
		return badRequest("HTTP check Header and Body are not supported: Roster's HTTP checks send a plain GET")
	case ch.TLSSkipVerify || ch.TLSServerName != "" || ch.TCPUseTLS || ch.GRPCUseTLS:
		return badRequest("check TLS options (TLSSkipVerify, TLSServerName, TCPUseTLS, GRPCUseTLS) are not supported")
	case ch.FailuresBeforeWarning > 0:
		return badRequest("FailuresBeforeWarning is not supported: a failing check turns an instance critical")
	case ch.SuccessBeforePassing < 0 || ch.FailuresBeforeCritical < 0:
		return badRequest("SuccessBeforePassing and FailuresBeforeCritical must not be negative")
	}
	active := 0
	for _, s := range []string{ch.HTTP, ch.TCP, ch.GRPC} {
		if s != "" {
			active++
		}
	}
	switch {
	case ch.TTL.set && active > 0:
		return badRequest("check %s has a TTL and an HTTP, TCP or gRPC target; a check is one or the other", wantID)
	case active > 1:
		return badRequest("check %s has more than one of HTTP, TCP and gRPC", wantID)
	case ch.TTL.set:
		if inst.Ttl != nil {
			return badRequest("more than one TTL check: Roster keeps one TTL per instance")
		}
		inst.Ttl = ch.TTL.proto()
	case active == 1:
		if inst.Check != nil {
			return badRequest("more than one HTTP, TCP or gRPC check: Roster runs one active check per instance")
		}
		hc := &rosterv1.HealthCheck{
			Interval: ch.Interval.proto(), Timeout: ch.Timeout.proto(),
			FailuresBeforeCritical: uint32(ch.FailuresBeforeCritical),
			SuccessesBeforePassing: uint32(ch.SuccessBeforePassing),
		}
		switch {
		case ch.HTTP != "":
			hc.Target = &rosterv1.HealthCheck_Http{Http: ch.HTTP}
		case ch.TCP != "":
			hc.Target = &rosterv1.HealthCheck_Tcp{Tcp: ch.TCP}
		default:
			// Consul's form is host:port, or host:port/service.
			target, svc, _ := strings.Cut(ch.GRPC, "/")
			hc.Target = &rosterv1.HealthCheck_Grpc{Grpc: target}
			hc.GrpcService = svc
		}
		if !ch.Interval.set {
			return badRequest("check %s needs an Interval", wantID)
		}
		inst.Check = hc
	default:
		return badRequest("check %s needs a TTL, HTTP, TCP or GRPC", wantID)
	}
	// Consul ignores a zero DeregisterCriticalServiceAfter, as if not given.
	if ch.DeregisterCriticalServiceAfter.set && ch.DeregisterCriticalServiceAfter.d != 0 {
		d := ch.DeregisterCriticalServiceAfter.proto()
		// One instance, one bound: the shortest asked for.
		if inst.DeregisterCriticalAfter == nil || d.AsDuration() < inst.DeregisterCriticalAfter.AsDuration() {
			inst.DeregisterCriticalAfter = d
		}
	}
	return nil
}

// deregister maps PUT /v1/agent/service/deregister/:id onto Registry.Deregister.
func (c *consulAPI) deregister(w http.ResponseWriter, r *http.Request) {
	ns, id := namespace(r), r.PathValue("id")
	svc, err := c.serviceOf(r.Context(), ns, id)
	if err != nil {
		writeConsulError(w, err)
		return
	}
	if _, err := c.h.registry.Deregister(r.Context(), &rosterv1.DeregisterRequest{Namespace: ns, Service: svc, Id: id}); err != nil {
		writeConsulError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// maintenance maps PUT /v1/agent/service/maintenance/:id?enable=&reason=
// onto Registry.SetMaintenance: maintenance on drains the instance.
func (c *consulAPI) maintenance(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// Consul reads enable with strconv.ParseBool: 1, t, TRUE, false, ...
	raw := q.Get("enable")
	if raw == "" {
		writeConsulError(w, badRequest("missing value for enable"))
		return
	}
	on, err := strconv.ParseBool(raw)
	if err != nil {
		writeConsulError(w, badRequest("enable must be true or false, not %q", raw))
		return
	}
	ns, id := namespace(r), r.PathValue("id")
	svc, err := c.serviceOf(r.Context(), ns, id)
	if err != nil {
		writeConsulError(w, err)
		return
	}
	reason := q.Get("reason")
	if on && reason == "" {
		reason = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
	}
	if _, err := c.h.registry.SetMaintenance(r.Context(), &rosterv1.SetMaintenanceRequest{
		Namespace: ns, Service: svc, Id: id, Enabled: !on, Reason: reason,
	}); err != nil {
		writeConsulError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// checkStatus serves PUT /v1/agent/check/pass|warn|fail/:check_id?note=.
func (c *consulAPI) checkStatus(st rosterv1.HealthStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.report(w, r, st, r.URL.Query().Get("note"))
	}
}

// checkUpdate serves PUT /v1/agent/check/update/:check_id with a body of
// {"Status": "passing|warning|critical", "Output": "..."}.
func (c *consulAPI) checkUpdate(w http.ResponseWriter, r *http.Request) {
	var body struct{ Status, Output string }
	if err := decodeConsulBody(w, r, &body); err != nil {
		writeConsulError(w, err)
		return
	}
	var st rosterv1.HealthStatus
	switch body.Status {
	case "passing":
		st = rosterv1.HealthStatus_HEALTH_STATUS_PASSING
	case "warning":
		st = rosterv1.HealthStatus_HEALTH_STATUS_WARNING
	case "critical":
		st = rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL
	default:
		writeConsulError(w, badRequest("invalid check status: %q (passing, warning or critical)", body.Status))
		return
	}
	c.report(w, r, st, body.Output)
}

// report sends a TTL check's status to Registry.ReportHealth: a pass is a
// heartbeat, a warn or fail also renews the lease and sets the status.
func (c *consulAPI) report(w http.ResponseWriter, r *http.Request, st rosterv1.HealthStatus, output string) {
	ns := namespace(r)
	svc, id, err := c.checkOwner(r, ns, r.PathValue("check"))
	if err != nil {
		writeConsulError(w, err)
		return
	}
	if _, err := c.h.registry.ReportHealth(r.Context(), &rosterv1.ReportHealthRequest{
		Namespace: ns, Service: svc, Id: id, Status: st, Reason: truncateOutput(output),
	}); err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			err = badRequest("check %q is not a TTL check: %s", r.PathValue("check"), status.Convert(err).Message())
		}
		writeConsulError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// unknownCheck is Consul's answer to a check ID its agent does not have.
func unknownCheck(check, why string) error {
	return &consulError{code: http.StatusNotFound, msg: fmt.Sprintf("Unknown check ID %q: %s", check, why)}
}

// checkOwner finds the instance a check ID belongs to: "service:ID" or
// "service:ID:N". A service ID may itself contain ':', so the whole
// remainder is tried before the one without its ":N"; both are looked up
// at once. The ID must name a check the instance has (consulCheckIDs).
func (c *consulAPI) checkOwner(r *http.Request, ns, check string) (svc, id string, err error) {
	rest, ok := strings.CutPrefix(check, "service:")
	if !ok || rest == "" {
		return "", "", unknownCheck(check, "Roster's checks belong to services and are named service:<service-id>")
	}
	ids := []string{rest}
	if i := strings.LastIndexByte(rest, ':'); i > 0 && isDigits(rest[i+1:]) {
		ids = append(ids, rest[:i])
	}
	found, read, err := c.holdersRead(r.Context(), ns, heartbeatIndexAge, ids...)
	if err != nil {
		return "", "", err
	}
	id = rest
	if len(found[0]) == 0 && len(ids) == 2 {
		id = ids[1]
	}
	held := found[0]
	if id != rest {
		held = found[1]
	}
	if len(held) == 0 {
		return "", "", unknownCheck(check, fmt.Sprintf("no instance in namespace %q has service ID %q", ns, id))
	}
	if svc, err = onlyHolder(ns, id, held); err != nil {
		return "", "", err
	}
	// The instance's checks; the read holders made is of its service on
	// the usual path, else one more read.
	if read == nil || !slices.ContainsFunc(read.Instances, func(in *rosterv1.Instance) bool { return in.Service == svc }) {
		if read, err = c.h.registry.GetService(r.Context(), &rosterv1.GetServiceRequest{Namespace: ns, Service: svc}); err != nil {
			return "", "", err
		}
	}
	i := slices.IndexFunc(read.Instances, func(in *rosterv1.Instance) bool { return in.Id == id })
	if i < 0 {
		return "", "", unknownCheck(check, fmt.Sprintf("no instance in namespace %q has service ID %q", ns, id))
	}
	valid := consulCheckIDs(read.Instances[i])
	if !slices.Contains(valid, check) {
		why := fmt.Sprintf("instance %q has no checks", id)
		if len(valid) > 0 {
			why = fmt.Sprintf("the checks of instance %q are %s", id, quoteAll(valid))
		}
		return "", "", unknownCheck(check, why)
	}
	return svc, id, nil
}

// consulCheckIDs are the check IDs an instance answers to, Consul's
// defaults for what it was registered with: none without a TTL or an
// active check, "service:ID" with one of them, "service:ID:1" and
// "service:ID:2" with both (Roster does not keep which was given first,
// so either is taken), and "service:ID" too, the check health shows.
func consulCheckIDs(in *rosterv1.Instance) []string {
	n := 0
	if in.Ttl != nil {
		n++
	}
	if in.Check != nil {
		n++
	}
	ids := []string{}
	if n > 0 {
		ids = append(ids, "service:"+in.Id)
	}
	if n > 1 {
		for i := 1; i <= n; i++ {
			ids = append(ids, fmt.Sprintf("service:%s:%d", in.Id, i))
		}
	}
	return ids
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// truncateOutput cuts check output to what the Registry keeps, on a rune
// boundary.
func truncateOutput(s string) string {
	if len(s) <= maxCheckOutput {
		return s
	}
	s = s[:maxCheckOutput]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
