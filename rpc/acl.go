package rpc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/acl"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// ACLOptions turn on ACL tokens.
type ACLOptions struct {
	// Enabled: every call needs a token that allows it; without it no call
	// is checked.
	Enabled bool
	// BootstrapSecret, when set, is the secret of the management token the
	// leader creates if ACL bootstrap has not happened yet.
	BootstrapSecret string
}

// AuthorizationKey is the metadata key that carries a caller's token, as
// "Bearer <secret>".
const AuthorizationKey = "authorization"

// WithToken returns ctx carrying secret as the outgoing token of the calls
// made with it (for in-process callers such as the HTTP and DNS front ends).
func WithToken(ctx context.Context, secret string) context.Context {
	if secret == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, AuthorizationKey, "Bearer "+secret)
}

// withCallerToken returns ctx with the caller's token (the incoming
// authorization metadata) as outgoing metadata, so the leader that receives
// a relayed call checks the caller's token again, not the relaying node's.
func withCallerToken(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(AuthorizationKey); len(v) > 0 {
		return metadata.AppendToOutgoingContext(ctx, AuthorizationKey, v[0])
	}
	return ctx
}

// callerSecret returns the secret of the token the caller sent, or "".
func callerSecret(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(AuthorizationKey)
	if len(v) == 0 {
		return ""
	}
	s := strings.TrimSpace(v[0])
	if len(s) > 7 && strings.EqualFold(s[:7], "bearer ") {
		return strings.TrimSpace(s[7:])
	}
	return s
}

// errPermissionDenied is the start of every ACL refusal.
var errPermissionDenied = errors.New("permission denied")

// denied is a refusal by the caller's token's rules (reason
// ACL_DENIED); an unknown token is refused with ACL_TOKEN_NOT_FOUND.
func denied(format string, args ...any) error {
	return withReason(codes.PermissionDenied, fmt.Sprintf("%v: %s", errPermissionDenied, fmt.Sprintf(format, args...)), ReasonACLDenied)
}

// caller is the resolved token of one call.
type caller struct {
	policy *acl.Policy
	// name describes the token in refusals: "token" or "anonymous token".
	name string
	// token and sum (its secret's digest) are the token resolved; nil for
	// an anonymous caller.
	token *store.Token
	sum   []byte
}

// leaderReadyWait bounds how long a token lookup that misses on a leader
// not yet through its barrier waits for it (an election's barrier commits
// within a heartbeat round or two).
const leaderReadyWait = 2 * time.Second

// resolve finds the caller's token in this node's state. A call without a
// token is anonymous and allowed nothing; an unknown token is refused.
func (s *Server) resolve(ctx context.Context) (*caller, error) {
	secret := callerSecret(ctx)
	if secret == "" {
		return &caller{policy: acl.NewPolicy(nil), name: "anonymous token (no token given)"}, nil
	}
	sum := acl.HashSecret(secret)
	t := s.node.Store().View().TokenBySecret(sum)
	if t == nil && !s.node.LeaderReady() && s.node.IsLeader() {
		// A new leader applies earlier terms' entries up to its barrier:
		// a token a follower knows (and relays a call with) may not be in
		// its state yet. Only a miss on such a leader waits.
		if h := s.tokenCalls.hooks.Load(); h != nil && h.awaitLeader != nil {
			h.awaitLeader()
		}
		wait, cancel := context.WithTimeout(ctx, leaderReadyWait)
		ready := s.node.AwaitLeaderReady(wait)
		cancel()
		if ready {
			t = s.node.Store().View().TokenBySecret(sum)
		}
	}
	if t == nil {
		return nil, withReason(codes.PermissionDenied, errPermissionDenied.Error()+": ACL token not found", ReasonACLTokenNotFound)
	}
	var rules []acl.Rule
	for _, r := range t.Rules {
		// Rules are checked when a token is created; one that no longer
		// parses allows nothing.
		if pr, err := acl.ParseRule(r); err == nil {
			rules = append(rules, pr)
		}
	}
	return &caller{policy: acl.NewPolicy(rules), name: "token " + t.AccessorID, token: t, sum: sum}, nil
}

func (c *caller) service(ns, svc string, need acl.Access) error {
	if ns == "" {
		ns = store.DefaultNamespace
	}
	if c.policy.AllowService(ns, svc, need) {
		return nil
	}
	return denied("%s lacks service:%s:%s in namespace %s", c.name, svc, need, ns)
}

func (c *caller) resource(res string, need acl.Access) error {
	if c.policy.Allow(res, need) {
		return nil
	}
	return denied("%s lacks %s:%s", c.name, res, need)
}

// open are the methods any caller may make: status (filtered for the
// caller, filterStatus), health and reflection, ACL bootstrap (it works
// once), the read index (one number), and Join, which only servers may make
// (their certificates prove it, serveronly.go).
var open = map[string]bool{
	rosterv1.Cluster_Status_FullMethodName:    true,
	rosterv1.Cluster_ReadIndex_FullMethodName: true,
	rosterv1.Cluster_Join_FullMethodName:      true,
	rosterv1.ACL_Bootstrap_FullMethodName:     true,
}

// resourceNeeds are the methods checked against operator and acl rules.
var resourceNeeds = map[string]struct {
	resource string
	need     acl.Access
}{
	rosterv1.Cluster_Members_FullMethodName:             {"operator", acl.Read},
	rosterv1.Cluster_RemoveNode_FullMethodName:          {"operator", acl.Write},
	rosterv1.Cluster_TransferLeadership_FullMethodName:  {"operator", acl.Write},
	rosterv1.Cluster_SetSelfPreservation_FullMethodName: {"operator", acl.Write},
	// A snapshot holds every instance and the ACL tokens' digests, and a
	// restore replaces them all.
	rosterv1.Cluster_SnapshotSave_FullMethodName:    {"acl", acl.Write},
	rosterv1.Cluster_SnapshotRestore_FullMethodName: {"acl", acl.Write},
	rosterv1.ACL_CreateToken_FullMethodName:         {"acl", acl.Write},
	rosterv1.ACL_DeleteToken_FullMethodName:         {"acl", acl.Write},
	rosterv1.ACL_ListTokens_FullMethodName:          {"acl", acl.Read},
}

func openMethod(method string) bool {
	return open[method] || strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

// authorize checks a unary call against the caller's token.
func (s *Server) authorize(c *caller, method string, req any) error {
	if rn, ok := resourceNeeds[method]; ok {
		return c.resource(rn.resource, rn.need)
	}
	switch r := req.(type) {
	case *rosterv1.RegisterRequest:
		return c.service(r.GetInstance().GetNamespace(), r.GetInstance().GetService(), acl.Write)
	case *rosterv1.DeregisterRequest:
		return c.service(r.Namespace, r.Service, acl.Write)
	case *rosterv1.SetMaintenanceRequest:
		return c.service(r.Namespace, r.Service, acl.Write)
	case *rosterv1.HeartbeatRequest:
		return c.service(r.Namespace, r.Service, acl.Write)
	case *rosterv1.ReportHealthRequest:
		return c.service(r.Namespace, r.Service, acl.Write)
	case *rosterv1.GetServiceRequest:
		return c.service(r.Namespace, r.Service, acl.Read)
	case *rosterv1.GetLeasesRequest:
		return c.service(r.Namespace, r.Service, acl.Read)
	case *rosterv1.ListServicesRequest, *rosterv1.RequestProgressRequest:
		// ListServices answers only what the token may read (filterList);
		// RequestProgress only asks this node's streams for a bookmark.
		return nil
	}
	return denied("%s is not allowed %s", c.name, method)
}

// filterList drops the services the caller may not read from a list.
func filterList(c *caller, resp any) {
	r, ok := resp.(*rosterv1.ListServicesResponse)
	if !ok {
		return
	}
	kept := r.Services[:0]
	for _, sv := range r.Services {
		if c.policy.AllowService(sv.Namespace, sv.Service, acl.Read) {
			kept = append(kept, sv)
		}
	}
	r.Services = kept
}

// filterStatus drops from a Status answer the services the caller may not
// read: the services whose expiry self-preservation holds, and those with
// their own minimum lease count. Both name services, and Status is open.
// How many of each it drops is counted in the answer. The counts
// (instances, leases, held expiries) stay: they name nothing, and /metrics
// serves them to anyone.
func filterStatus(c *caller, r *rosterv1.StatusResponse) {
	readable := func(key string) bool {
		ns, svc, ok := strings.Cut(key, "/")
		if !ok {
			ns, svc = store.DefaultNamespace, key
		}
		return c.policy.AllowService(ns, svc, acl.Read)
	}
	// New slice and map: the answer's may be shared with the node's state.
	// What is left out is counted: an empty list of held services with
	// self_preservation set would otherwise read as "holds every expiry".
	var services []string
	for _, key := range r.SelfPreservationServices {
		if readable(key) {
			services = append(services, key)
		} else {
			r.SelfPreservationUnreadableServices++
		}
	}
	r.SelfPreservationServices = services
	var minLeases map[string]uint32
	for key, n := range r.SelfPreservationServiceMinLeases {
		if !readable(key) {
			r.SelfPreservationUnreadableServiceMinLeases++
			continue
		}
		if minLeases == nil {
			minLeases = make(map[string]uint32)
		}
		minLeases[key] = n
	}
	r.SelfPreservationServiceMinLeases = minLeases
}

// openStatus answers the open Status call, filtered for the caller's
// token. Status needs no token, so an unknown one is not refused here: it
// reads as anonymous.
//
// Servers get it whole: a follower learns from the leader's Status which
// services are held, and asks without a token. With TLS a server proves
// itself with its certificate. Without TLS nothing tells a server from a
// client, so nothing is filtered: anyone can Join then and read the whole
// state through Raft, and hiding names here would only break followers.
func (s *Server) openStatus(ctx context.Context, req any, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	r, ok := resp.(*rosterv1.StatusResponse)
	if err != nil || !ok || s.opts.VerifyPeerServer == nil || s.fromServerPeer(ctx) {
		return resp, err
	}
	c, rerr := s.resolve(ctx)
	if rerr != nil {
		c = &caller{policy: acl.NewPolicy(nil), name: "anonymous token"}
	}
	filterStatus(c, r)
	return r, nil
}

// fromServerPeer reports whether the call's connection presented a server
// certificate of the cluster (Options.VerifyPeerServer).
func (s *Server) fromServerPeer(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && s.opts.VerifyPeerServer(info.State) == nil
}

func (s *Server) aclUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if s.opts.ACL.Enabled && info.FullMethod == rosterv1.Cluster_Status_FullMethodName {
		return s.openStatus(ctx, req, h)
	}
	if !s.opts.ACL.Enabled || openMethod(info.FullMethod) {
		return h(ctx, req)
	}
	c, err := s.resolve(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(c, info.FullMethod, req); err != nil {
		return nil, err
	}
	if r, ok := req.(*rosterv1.GetServiceRequest); ok && r.WaitRevision > 0 {
		// A blocking read may wait ten minutes, and answers when the
		// service changes: not after its token is gone.
		wctx, end, err := s.underToken(ctx, c, errWaitTokenGone)
		if err != nil {
			return nil, err
		}
		defer end()
		resp, err := h(wctx, req)
		if context.Cause(wctx) == errWaitTokenGone {
			return nil, errWaitTokenGone
		}
		return resp, err
	}
	resp, err := h(ctx, req)
	if err == nil {
		filterList(c, resp)
	}
	return resp, err
}

func (s *Server) aclStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !s.opts.ACL.Enabled || openMethod(info.FullMethod) {
		return h(srv, ss)
	}
	c, err := s.resolve(ss.Context())
	if err != nil {
		return err
	}
	if checkedPerMessage(info.FullMethod) {
		// These streams last: each ends once its token is gone.
		ctx, end, err := s.underToken(ss.Context(), c, errStreamTokenGone)
		if err != nil {
			return err
		}
		defer end()
		err = h(srv, &aclStream{ServerStream: ss, c: c, ctx: ctx})
		if context.Cause(ctx) == errStreamTokenGone {
			// Whatever the handler made of its context ending.
			return errStreamTokenGone
		}
		return err
	}
	if rn, ok := resourceNeeds[info.FullMethod]; ok {
		if err := c.resource(rn.resource, rn.need); err != nil {
			return err
		}
		return h(srv, ss)
	}
	return denied("%s is not allowed %s", c.name, info.FullMethod)
}

// watch checks a watch's request: read on its service; for a watch of a
// whole namespace, read on some service of it. A token that may read only
// some of the namespace's services watches those (watchFilter).
func (c *caller) watch(r *rosterv1.WatchRequest) error {
	if r.Service != "" {
		return c.service(r.Namespace, r.Service, acl.Read)
	}
	ns := r.Namespace
	if ns == "" {
		ns = store.DefaultNamespace
	}
	if !c.policy.AllowSomeService(ns, acl.Read) {
		return denied("%s may read no service of namespace %s (a watch of a whole namespace needs read on some service in it)", c.name, ns)
	}
	return nil
}

// watchFilter returns, for a watch of a whole namespace by a token that
// may read only some of its services, the test its events and resets pass
// through: the services the token may not read are left out, as if they
// did not exist (Consul's filtering). It is nil when nothing is left out.
// The token's rules are read once, when the watch starts, as every watch's
// check is.
func (c *caller) watchFilter(r *rosterv1.WatchRequest) func(service string) bool {
	ns := r.Namespace
	if ns == "" {
		ns = store.DefaultNamespace
	}
	if r.Service != "" || c.policy.AllowEveryService(ns, acl.Read) {
		return nil
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(service string) bool {
		mu.Lock()
		defer mu.Unlock()
		ok, known := seen[service]
		if !known {
			ok = c.policy.AllowService(ns, service, acl.Read)
			if len(seen) < maxFilterMemo {
				seen[service] = ok
			}
		}
		return ok
	}
}

// maxFilterMemo bounds the services a watch filter remembers its answer
// for; past it, it asks the policy each time.
const maxFilterMemo = 4096

// authorizeWatch checks one watch (of a Watch stream or a WatchMany
// stream) as aclStream checks a Watch stream's request, and returns its
// filter (watchFilter), nil when ACLs are off or the watch sees all it
// asks for. A watch's filter is read by one goroutine at a time: the
// watch's own, or its stream's group reader while the watch is parked.
func (s *Server) authorizeWatch(ctx context.Context, r *rosterv1.WatchRequest) (func(string) bool, error) {
	if !s.opts.ACL.Enabled {
		return nil, nil
	}
	c, err := s.resolve(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.watch(r); err != nil {
		return nil, err
	}
	return c.watchFilter(r), nil
}

// checkedPerMessage reports whether the stream method's requests are
// checked one by one, as they arrive (aclStream).
func checkedPerMessage(method string) bool {
	switch method {
	case rosterv1.Registry_Watch_FullMethodName, rosterv1.Registry_KeepAlive_FullMethodName,
		rosterv1.Registry_WatchMany_FullMethodName:
		return true
	}
	return false
}

// aclStream checks every request of a stream: a watch needs read on its
// service (or on some service of its namespace when it names none), a
// renewal write on its service.
type aclStream struct {
	grpc.ServerStream
	c *caller
	// ctx is the stream's context, which also ends once the token is gone
	// (underToken).
	ctx context.Context
}

func (a *aclStream) Context() context.Context { return a.ctx }

func (a *aclStream) RecvMsg(m any) error {
	if err := a.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	switch r := m.(type) {
	case *rosterv1.WatchRequest:
		return a.c.watch(r)
	case *rosterv1.WatchManyRequest:
		// Each watch is checked as it is created (authorizeWatch), and a
		// refusal ends that watch, not the stream.
		return nil
	case *rosterv1.HeartbeatRequest:
		if len(r.Instances) == 0 {
			return a.c.service(r.Namespace, r.Service, acl.Write)
		}
		if len(r.Instances) > MaxKeepAliveBatch {
			// Refused whole by the handler, renewing nothing: no walk.
			return nil
		}
		// A batch needs write on the service of every instance in it.
		var last *rosterv1.InstanceRef
		for _, in := range r.Instances {
			if last != nil && in.GetNamespace() == last.GetNamespace() && in.GetService() == last.GetService() {
				continue
			}
			if err := a.c.service(in.GetNamespace(), in.GetService(), acl.Write); err != nil {
				return err
			}
			last = in
		}
		return nil
	}
	return denied("%s: unexpected message %T", a.c.name, m)
}

// aclOptions are the interceptors that check ACL tokens; they run inside
// the others, so a refusal is counted and logged like any error.
func (s *Server) aclOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.aclUnary),
		grpc.ChainStreamInterceptor(s.aclStream),
	}
}

// randomID returns a random id in the UUID layout.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// newToken makes a token with a fresh accessor id and, unless secret is
// given, a fresh secret; it returns the token and its secret.
func newToken(secret, description string, rules []string) (*store.Token, string, error) {
	accessor, err := randomID()
	if err != nil {
		return nil, "", err
	}
	if secret == "" {
		if secret, err = randomID(); err != nil {
			return nil, "", err
		}
	}
	return &store.Token{AccessorID: accessor, SecretHex: hex.EncodeToString(acl.HashSecret(secret)),
		Description: description, Rules: rules}, secret, nil
}

func tokenToAPI(t *store.Token, secret string) *rosterv1.ACLToken {
	return &rosterv1.ACLToken{AccessorId: t.AccessorID, SecretId: secret, Description: t.Description,
		Rules: append([]string(nil), t.Rules...), CreateTimeUnixNs: t.CreateUnixNs, Management: t.Bootstrap}
}

// aclStatus turns the store's ACL errors into statuses.
func aclStatus(err error) error {
	switch {
	case errors.Is(err, store.ErrACLBootstrapped):
		return status.Error(codes.FailedPrecondition, "ACL bootstrap already done: it works once per cluster")
	case errors.Is(err, store.ErrTokenNotFound):
		return withReason(codes.NotFound, err.Error(), ReasonNotFound)
	case errors.Is(err, store.ErrTokenExists):
		return status.Error(codes.AlreadyExists, err.Error())
	}
	return err
}

// errACLDisabled refuses the calls that make tokens on a node running
// without --acl: a token made there would protect nothing, while whoever
// holds it could believe it does.
var errACLDisabled = status.Error(codes.FailedPrecondition, "ACLs are not enabled on this node; start every server with --acl")

// Bootstrap implements rosterv1.ACLServer. A node without ACLs refuses it
// (errACLDisabled); so does a leader without them, when a node with them
// relays it.
func (s *Server) Bootstrap(ctx context.Context, _ *rosterv1.ACLBootstrapRequest) (*rosterv1.ACLBootstrapResponse, error) {
	if !s.opts.ACL.Enabled {
		return nil, errACLDisabled
	}
	return onLeader(ctx, s, applyOnce,
		func(ctx context.Context) (*rosterv1.ACLBootstrapResponse, error) {
			if s.node.Store().View().ACLBootstrapped() {
				return nil, aclStatus(store.ErrACLBootstrapped)
			}
			t, secret, err := newToken("", "bootstrap management token", acl.ManagementRules)
			if err != nil {
				return nil, err
			}
			t, err = s.node.SetToken(ctx, t, true)
			if err != nil {
				return nil, aclStatus(err)
			}
			s.logger.Info("acl bootstrapped", "accessor_id", t.AccessorID)
			t.Bootstrap = true
			return &rosterv1.ACLBootstrapResponse{Token: tokenToAPI(t, secret)}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.ACLBootstrapResponse, error) {
			return rosterv1.NewACLClient(cc).Bootstrap(ctx, &rosterv1.ACLBootstrapRequest{})
		})
}

// MaxTokenDescription bounds a token's description.
const MaxTokenDescription = 256

// CreateToken implements rosterv1.ACLServer. Like Bootstrap, it is refused
// without ACLs: anyone may call it then, and the token would become valid
// the day ACLs are turned on. ListTokens and DeleteToken still work, to
// look at and remove tokens left from a time ACLs were on or restored
// from a snapshot.
func (s *Server) CreateToken(ctx context.Context, req *rosterv1.CreateTokenRequest) (*rosterv1.CreateTokenResponse, error) {
	if !s.opts.ACL.Enabled {
		return nil, errACLDisabled
	}
	if len(req.Description) > MaxTokenDescription {
		return nil, invalidf("description is %d bytes; the limit is %d", len(req.Description), MaxTokenDescription)
	}
	if len(req.Rules) == 0 {
		return nil, invalidf("a token needs at least one rule")
	}
	if _, err := acl.ParseRules(req.Rules); err != nil {
		return nil, invalidf("%v", err)
	}
	return onLeader(ctx, s, applyOnce,
		func(ctx context.Context) (*rosterv1.CreateTokenResponse, error) {
			t, secret, err := newToken("", req.Description, req.Rules)
			if err != nil {
				return nil, err
			}
			t, err = s.node.SetToken(ctx, t, false)
			if err != nil {
				return nil, aclStatus(err)
			}
			s.logger.Info("acl token created", "accessor_id", t.AccessorID)
			return &rosterv1.CreateTokenResponse{Token: tokenToAPI(t, secret)}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.CreateTokenResponse, error) {
			return rosterv1.NewACLClient(cc).CreateToken(ctx, req)
		})
}

// ListTokens implements rosterv1.ACLServer: this node's tokens, without
// their secrets (no node knows them).
func (s *Server) ListTokens(ctx context.Context, _ *rosterv1.ListTokensRequest) (*rosterv1.ListTokensResponse, error) {
	out := &rosterv1.ListTokensResponse{}
	err := s.node.Store().View().Tokens(func(t *store.Token) bool {
		out.Tokens = append(out.Tokens, tokenToAPI(t, ""))
		return true
	})
	return out, err
}

// DeleteToken implements rosterv1.ACLServer.
func (s *Server) DeleteToken(ctx context.Context, req *rosterv1.DeleteTokenRequest) (*rosterv1.DeleteTokenResponse, error) {
	if req.AccessorId == "" || len(req.AccessorId) > 64 {
		return nil, invalidf("accessor_id must be 1 to 64 characters")
	}
	return onLeader(ctx, s, applyOnce,
		func(ctx context.Context) (*rosterv1.DeleteTokenResponse, error) {
			if err := s.node.DeleteToken(ctx, req.AccessorId); err != nil {
				return nil, aclStatus(err)
			}
			s.logger.Info("acl token deleted", "accessor_id", req.AccessorId)
			return &rosterv1.DeleteTokenResponse{}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.DeleteTokenResponse, error) {
			return rosterv1.NewACLClient(cc).DeleteToken(ctx, req)
		})
}

// bootstrapFromSecret makes the configured bootstrap secret the management
// token, on whichever node leads, if ACL bootstrap has not happened. The
// state machine makes it idempotent: a bootstrap with the same secret after
// it is a no-op, so every server may be given the secret and restarts and
// new leaders do no harm. It ends when the token exists or bootstrap was
// done otherwise.
func (s *Server) bootstrapFromSecret() {
	secret := s.opts.ACL.BootstrapSecret
	if secret == "" {
		return
	}
	sum := acl.HashSecret(secret)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		v := s.node.Store().View()
		if tok := v.TokenBySecret(sum); tok != nil && tok.Bootstrap {
			return
		}
		if v.ACLBootstrapped() {
			s.logger.Warn("acl bootstrap already done otherwise; the configured bootstrap token is not created")
			return
		}
		if s.node.LeaderReady() {
			tok, _, err := newToken(secret, "bootstrap management token", acl.ManagementRules)
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), s.opts.HoldTimeout)
				_, err = s.node.SetToken(ctx, tok, true)
				cancel()
			}
			switch {
			case err == nil:
				s.logger.Info("acl bootstrapped from the configured token", "accessor_id", tok.AccessorID)
				return
			case errors.Is(err, store.ErrACLBootstrapped):
				s.logger.Warn("acl bootstrap already done otherwise; the configured bootstrap token is not created")
				return
			default:
				s.logger.Warn("acl bootstrap from the configured token failed; retrying", "error", err)
			}
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}
