package main

import (
	"github.com/spf13/pflag"

	"github.com/roster-registry/roster/rpc"
)

// Defaults of the limit flags; the README's "Limits" section lists them.
const (
	defaultMaxInstancesPerService   = 10_000
	defaultMaxInstancesPerNamespace = 100_000
	defaultMaxWatchersPerConnection = 1_000
	defaultRateLimit                = 1_000
	defaultRateBurst                = 2_000
	defaultReadRateLimit            = 5_000
	defaultReadRateBurst            = 10_000
)

// limitFlags are the flags bounding what one client may ask.
type limitFlags struct {
	maxRequestBytes          int
	maxInstancesPerService   int
	maxInstancesPerNamespace int
	maxWatchersPerConnection int
	rateLimit                float64
	rateBurst                int
	readRateLimit            float64
	readRateBurst            int
}

func (l *limitFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&l.maxRequestBytes, "max-request-bytes", rpc.DefaultMaxRequestBytes,
		"largest gRPC request message accepted; a larger one fails with InvalidArgument")
	fs.IntVar(&l.maxInstancesPerService, "max-instances-per-service", defaultMaxInstancesPerService,
		"instances one service may have; a registration beyond it fails with ResourceExhausted (0: no limit)")
	fs.IntVar(&l.maxInstancesPerNamespace, "max-instances-per-namespace", defaultMaxInstancesPerNamespace,
		"instances one namespace may have; a registration beyond it fails with ResourceExhausted (0: no limit)")
	fs.IntVar(&l.maxWatchersPerConnection, "max-watchers-per-connection", defaultMaxWatchersPerConnection,
		"open watches one client connection may have: Watch streams, and the watches of WatchMany streams (0: no limit)")
	fs.Float64Var(&l.rateLimit, "rate-limit", defaultRateLimit,
		"writes per second one client may send (token bucket per client: TLS certificate subject, else IP address); "+
			"beyond it calls fail with ResourceExhausted, HTTP 429 (0: no limit)")
	fs.IntVar(&l.rateBurst, "rate-burst", defaultRateBurst, "writes one client may send at once above --rate-limit")
	fs.Float64Var(&l.readRateLimit, "read-rate-limit", defaultReadRateLimit,
		"reads, heartbeats and watch opens per second one client may send, counted apart from writes (0: no limit)")
	fs.IntVar(&l.readRateBurst, "read-rate-burst", defaultReadRateBurst, "reads one client may send at once above --read-rate-limit")
}

// apply checks the flags and sets them in opts.
func (l *limitFlags) apply(opts *rpc.Options) error {
	switch {
	case l.maxRequestBytes < 4<<10:
		return usagef("--max-request-bytes %d: must be at least 4096", l.maxRequestBytes)
	case l.maxInstancesPerService < 0, l.maxInstancesPerNamespace < 0, l.maxWatchersPerConnection < 0:
		return usagef("--max-instances-per-service, --max-instances-per-namespace and --max-watchers-per-connection must not be negative")
	case l.rateLimit < 0, l.readRateLimit < 0, l.rateBurst < 0, l.readRateBurst < 0:
		return usagef("--rate-limit, --rate-burst, --read-rate-limit and --read-rate-burst must not be negative")
	case l.rateLimit > 0 && l.rateBurst < 1, l.readRateLimit > 0 && l.readRateBurst < 1:
		return usagef("a rate limit needs a burst of at least 1")
	}
	opts.Limits = rpc.Limits{
		MaxRequestBytes:          l.maxRequestBytes,
		MaxInstancesPerService:   l.maxInstancesPerService,
		MaxInstancesPerNamespace: l.maxInstancesPerNamespace,
		MaxWatchersPerConnection: l.maxWatchersPerConnection,
		Rate:                     l.rateLimit,
		Burst:                    l.rateBurst,
		ReadRate:                 l.readRateLimit,
		ReadBurst:                l.readRateBurst,
	}
	return nil
}
