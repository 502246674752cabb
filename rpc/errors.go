package rpc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/cluster"
	"github.com/roster-registry/roster/store"
)

// ErrorDomain is the domain of every ErrorInfo detail Roster attaches.
const ErrorDomain = "roster.dev"

// Reasons in ErrorInfo details, for clients that act on them.
const (
	ReasonNotLeader      = "NOT_LEADER"
	ReasonNoLeader       = "NO_LEADER"
	ReasonOutcomeUnknown = "OUTCOME_UNKNOWN"
	ReasonInvalid        = "INVALID_ARGUMENT"
	ReasonNotFound       = "NOT_FOUND"
	ReasonSlowWatcher    = "SLOW_WATCHER"
	ReasonShutdown       = "SHUTDOWN"
	// ReasonRequestReused: the request id was already used by a different
	// request; nothing was applied.
	ReasonRequestReused = "REQUEST_ID_REUSED"
	// ReasonNodeDraining ends the streams of a node that is shutting down:
	// reconnect to another node.
	ReasonNodeDraining = "NODE_DRAINING"
	// ReasonTransferInProgress: another leadership transfer is under way;
	// this one was not started.
	ReasonTransferInProgress = "LEADERSHIP_TRANSFER_IN_PROGRESS"
	// ReasonTransferFailed: Raft gave up on the leadership transfer (the
	// target did not win an election in time, or could not be reached);
	// the message says who leads.
	ReasonTransferFailed = "LEADERSHIP_TRANSFER_FAILED"
	// ReasonNewLeaderUnknown: leadership was handed over, but no new
	// leader had been heard from when the wait for one ended. Not a reason
	// to transfer again: the election may still be under way.
	ReasonNewLeaderUnknown = "NEW_LEADER_UNKNOWN"
	// ReasonACLDenied: the caller's token does not allow the call
	// (PermissionDenied).
	ReasonACLDenied = "ACL_DENIED"
	// ReasonACLTokenNotFound: the call carried a token this node does not
	// know (PermissionDenied).
	ReasonACLTokenNotFound = "ACL_TOKEN_NOT_FOUND"
)

// errNoSuchStream: RequestProgress named no open watch stream.
var errNoSuchStream = errors.New("no such watch stream")

// invalidError is a request that fails validation.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// toStatus maps every error a handler can meet to a gRPC status. It is the
// only place that does.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		// Already a status, e.g. relayed from the leader.
		return err
	}
	var inv *invalidError
	var slow *slowWatcherError
	var lim *limitError
	switch {
	case errors.As(err, &lim) && lim.retryAfter > 0:
		return withDetails(codes.ResourceExhausted, lim.msg,
			&errdetails.ErrorInfo{Reason: lim.reason, Domain: ErrorDomain},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(lim.retryAfter)})
	case errors.As(err, &lim):
		return withReason(codes.ResourceExhausted, lim.msg, lim.reason)
	case errors.Is(err, store.ErrLimitExceeded):
		return withReason(codes.ResourceExhausted, err.Error(), ReasonInstanceLimit)
	case errors.As(err, &inv):
		return withReason(codes.InvalidArgument, inv.msg, ReasonInvalid)
	case errors.As(err, &slow) && slow.many:
		return withReason(codes.ResourceExhausted, slow.Error(), ReasonSlowWatcher)
	case errors.As(err, &slow):
		return withInfo(codes.ResourceExhausted, slow.Error(), &errdetails.ErrorInfo{
			Reason: ReasonSlowWatcher, Domain: ErrorDomain,
			Metadata: map[string]string{MetaLastRevision: strconv.FormatUint(slow.last, 10)},
		})
	case errors.Is(err, store.ErrNotFound), errors.Is(err, errNoSuchStream):
		return withReason(codes.NotFound, err.Error(), ReasonNotFound)
	case errors.Is(err, cluster.ErrNoLease):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, cluster.ErrInvalidSelfPreservation):
		return withReason(codes.InvalidArgument, err.Error(), ReasonInvalid)
	case errors.Is(err, store.ErrStaleRegistration):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrLeaderNotReady):
		return withReason(codes.Unavailable, err.Error(), ReasonNotLeader)
	case errors.Is(err, errLeaderUnreachable):
		return withReason(codes.Unavailable, err.Error(), ReasonNoLeader)
	case errors.Is(err, store.ErrRequestReused):
		return withReason(codes.InvalidArgument, err.Error(), ReasonRequestReused)
	case errors.Is(err, cluster.ErrRemoved):
		// Still NO_LEADER (nothing applied; another node can take it),
		// saying that only this node is cut off.
		return withReason(codes.Unavailable, cluster.ErrRemoved.Error(), ReasonNoLeader)
	case errors.Is(err, cluster.ErrNoLeader):
		return withReason(codes.Unavailable, noLeaderText(err), ReasonNoLeader)
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		return withReason(codes.Unavailable, err.Error(), ReasonOutcomeUnknown)
	case errors.Is(err, errDraining):
		return withReason(codes.Unavailable, err.Error(), ReasonNodeDraining)
	case errors.Is(err, cluster.ErrShutdown):
		return withReason(codes.Unavailable, err.Error(), ReasonShutdown)
	case errors.Is(err, cluster.ErrEnqueueTimeout):
		return withReason(codes.Unavailable, err.Error(), ReasonNotLeader)
	case errors.Is(err, cluster.ErrEntryTooLarge):
		return withReason(codes.InvalidArgument, err.Error(), ReasonInvalid)
	case errors.Is(err, cluster.ErrUnknownNode):
		return withReason(codes.NotFound, err.Error(), ReasonNotFound)
	case errors.Is(err, cluster.ErrTransferInProgress):
		return withReason(codes.Aborted, err.Error(), ReasonTransferInProgress)
	case errors.Is(err, cluster.ErrTransferTimeout), errors.Is(err, cluster.ErrTransferFailed):
		return withReason(codes.Aborted, err.Error(), ReasonTransferFailed)
	case errors.Is(err, cluster.ErrNewLeaderUnknown):
		// Not NO_LEADER, which tells callers nothing was applied.
		return withReason(codes.Unavailable, err.Error(), ReasonNewLeaderUnknown)
	case errors.Is(err, cluster.ErrConfigurationPending), errors.Is(err, cluster.ErrRestoreRaced):
		// Nothing was restored; the message says to try again.
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, cluster.ErrNotVoter), errors.Is(err, cluster.ErrAlreadyLeader),
		errors.Is(err, cluster.ErrNoOtherVoter), errors.Is(err, cluster.ErrLastVoter):
		// A membership change the cluster refused; nothing changed.
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

func withReason(c codes.Code, msg, reason string) error {
	return withInfo(c, msg, &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain})
}

func withInfo(c codes.Code, msg string, info *errdetails.ErrorInfo) error {
	return withDetails(c, msg, info)
}

func withDetails(c codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := status.New(c, msg)
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st.Err()
}

// Reason returns the ErrorInfo reason Roster attached to err, or "".
func Reason(err error) string {
	if info := errorInfo(err); info != nil {
		return info.Reason
	}
	return ""
}

// errorInfo returns the ErrorInfo detail Roster attached to err, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == ErrorDomain {
			return info
		}
	}
	return nil
}

// noLeaderText says why there is no leader, keeping what err adds to
// cluster.ErrNoLeader (this node shutting down, a watch to resume
// elsewhere, how long a read waited).
func noLeaderText(err error) string {
	const why = "no leader: the cluster is electing one or has lost its quorum"
	text, bare := err.Error(), cluster.ErrNoLeader.Error()
	rest, ok := strings.CutPrefix(text, bare)
	if !ok {
		return why + ": " + text
	}
	if rest = strings.TrimPrefix(rest, ":"); strings.TrimSpace(rest) == "" {
		return why
	}
	if strings.HasPrefix(rest, " (") {
		return why + rest
	}
	return why + ";" + rest
}
