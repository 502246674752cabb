package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/client"
	"github.com/roster-registry/roster/internal/buildinfo"
	"github.com/roster-registry/roster/internal/errtext"
	"github.com/roster-registry/roster/internal/tlsconfig"
)

// defaultAddr is the server address used when neither --addr nor
// ROSTER_ADDR says otherwise.
const defaultAddr = "127.0.0.1:7420"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError is a mistake in the command line; it exits 2.
type usageError struct {
	err error
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usageError.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// app is one invocation of the CLI: its global flags and output streams.
type app struct {
	stdout io.Writer
	stderr io.Writer

	addrFlag string
	output   string
	timeout  time.Duration

	addrs []string
	tls   tlsFlags
	// token is the ACL token secret sent with every call.
	token string
	// tokenEnv is ROSTER_TOKEN, used when --token is not given.
	tokenEnv string
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.rootCommand(getenv)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	addCompletion(root)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	line := errorLine(err)
	if hint := tlsconfig.MismatchHint(line, a.tls.on()); hint != "" {
		line += "; hint: " + hint
	}
	fmt.Fprintln(stderr, "roster: "+line)
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitError
}

func (a *app) rootCommand(getenv func(string) string) *cobra.Command {
	addr := defaultAddr
	if env := getenv("ROSTER_ADDR"); env != "" {
		addr = env
	}
	root := &cobra.Command{
		Use:   "roster",
		Short: "Command-line client of the Roster service registry",
		Long: `roster talks to a Roster cluster over gRPC: it registers and deregisters
service instances, discovers and watches them, and administers the cluster.

Give every node you know with --addr (or ROSTER_ADDR): calls go to the first
that answers, and safe calls move on to the next when one is down.

Errors print one line, "roster: <message>", and exit 1; a mistake on the
command line exits 2 before anything is sent.`,
		Example: `  roster register payments p1 10.0.0.5:8080 --tag v2 --ttl 30s --keepalive
  roster get payments --healthy -o json
  roster --addr 10.0.0.1:7420,10.0.0.2:7420 watch payments`,
		Version:       buildinfo.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q (see roster --help)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if isCompletion(cmd) {
				// Prints a script and talks to no server: a bad
				// ROSTER_ADDR or TLS setting must not stop it.
				return nil
			}
			if !cmd.Flags().Changed("token") {
				a.token = a.tokenEnv
			}
			if isOffline(cmd) {
				return a.parseOffline(cmd)
			}
			return a.parseGlobal()
		},
	}
	// cobra's "completion bash|zsh|fish|powershell" prints a shell
	// completion script (commands and flags).
	root.CompletionOptions.HiddenDefaultCmd = false
	root.SetVersionTemplate("roster {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usageError{err}
	})
	flags := root.PersistentFlags()
	flags.StringVar(&a.addrFlag, "addr", addr, "server addresses, HOST:PORT[,HOST:PORT...] (env ROSTER_ADDR)")
	flags.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	flags.DurationVar(&a.timeout, "timeout", 10*time.Second, "time limit of each call")
	a.registerTLSFlags(flags, getenv)
	// No default from ROSTER_TOKEN: help prints defaults, and this one is a
	// secret. parseGlobal reads the variable when the flag is not given.
	flags.StringVar(&a.token, "token", "", "ACL token secret sent with every call (env ROSTER_TOKEN)")
	a.tokenEnv = getenv("ROSTER_TOKEN")

	root.AddCommand(
		a.registerCommand(),
		a.deregisterCommand(),
		a.heartbeatCommand(),
		a.healthCommand(),
		a.maintCommand(),
		a.getCommand(),
		a.servicesCommand(),
		a.statusCommand(),
		a.membersCommand(),
		a.removeNodeCommand(),
		a.transferLeadershipCommand(),
		a.selfPreservationCommand(),
		a.watchCommand(),
		a.benchCommand(),
		a.tlsCommand(),
		a.aclCommand(),
		a.snapshotCommand(),
	)
	return root
}

// parseGlobal checks the global flags.
func (a *app) parseGlobal() error {
	addrs, err := client.ParseAddrs(a.addrFlag)
	if err != nil {
		return usagef("--addr: %w", err)
	}
	a.addrs = addrs
	if err := a.checkOutput(); err != nil {
		return err
	}
	if a.timeout <= 0 {
		return usagef("--timeout %s: must be positive", a.timeout)
	}
	return a.parseTLS()
}

// checkOutput checks --output.
func (a *app) checkOutput() error {
	switch a.output {
	case "table", "json":
		return nil
	}
	return usagef("--output %q: must be table or json", a.output)
}

// offlineAnnotation marks a command that talks to no server (see offline).
const offlineAnnotation = "roster_offline"

// offline marks cmd, and every command under it, as talking to no server:
// the connection settings (ROSTER_ADDR, --timeout, ROSTER_TLS_*, the
// token) are not checked for it, so a bad one meant for the cluster does
// not stop it.
func offline(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[offlineAnnotation] = "true"
	return cmd
}

// isOffline reports whether cmd or a command above it is marked offline.
func isOffline(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[offlineAnnotation] != "" {
			return true
		}
	}
	return false
}

// parseOffline checks the global flags an offline command uses: --output,
// and --addr only when the command line gives it (tls cert create --server
// puts its hosts in the certificate), never ROSTER_ADDR.
func (a *app) parseOffline(cmd *cobra.Command) error {
	if err := a.checkOutput(); err != nil {
		return err
	}
	if cmd.Flags().Changed("addr") {
		addrs, err := client.ParseAddrs(a.addrFlag)
		if err != nil {
			return usagef("--addr: %w", err)
		}
		a.addrs = addrs
	}
	return nil
}

// json reports whether output is JSON.
func (a *app) json() bool { return a.output == "json" }

// client connects to the cluster. Nothing is sent until the first call.
func (a *app) client(ctx context.Context) (*client.Client, error) {
	opts, err := a.clientOptions()
	if err != nil {
		return nil, err
	}
	if a.token != "" {
		opts = append(opts, client.WithToken(a.token))
	}
	// A write to addresses where nothing listens fails at once, naming
	// each refusal, rather than at --timeout.
	opts = append(opts, client.WithFailFastWrites())
	c, err := client.New(ctx, a.addrs, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

// call runs one call against the cluster within --timeout.
func (a *app) call(cmd *cobra.Command, do func(ctx context.Context, c *client.Client) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	defer cancel()
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return do(ctx, c)
}

// exactArgs is cobra.ExactArgs reporting a usage error, with the names of
// the arguments expected.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(names) == 0 && len(args) > 0 {
			return usagef("%s takes no arguments, got %q", cmd.Name(), args)
		}
		if len(args) != len(names) {
			return usagef("%s needs %d argument(s), %s; got %d", cmd.Name(), len(names), strings.Join(names, " "), len(args))
		}
		for i, a := range args {
			if a == "" {
				return usagef("%s: %s must not be empty", cmd.Name(), names[i])
			}
		}
		return nil
	}
}

// rangeArgs accepts between lo and hi arguments, reporting a usage error.
func rangeArgs(lo, hi int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("%s takes %s; got %d", cmd.Name(), names, len(args))
		}
		return nil
	}
}

// errorLine renders err as the one line printed after "roster: ". A gRPC
// status reads "<code in words>: <message>", unless the message already
// starts with those words (ACL refusals start "permission denied: ...").
func errorLine(err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		st := se.GRPCStatus()
		words, msg := errtext.CodeWords(st.Code()), st.Message()
		if len(msg) >= len(words) && strings.EqualFold(msg[:len(words)], words) {
			return errtext.OneLine(msg)
		}
		return errtext.OneLine(words + ": " + msg)
	}
	return errtext.OneLine(err.Error())
}

// isCompletion reports whether cmd is cobra's completion command, one of
// its shells, or the hidden command the scripts ask for candidates.
func isCompletion(cmd *cobra.Command) bool {
	switch cmd.Name() {
	case cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
		// The hidden commands the scripts run on every TAB.
		return true
	}
	for c := cmd; c != nil; c = c.Parent() {
		if c.Name() == "completion" && c.Parent() != nil && !c.Parent().HasParent() {
			return true
		}
	}
	return false
}

// addCompletion adds cobra's completion command now, after the root's
// output is set (its scripts go to the output it finds when added), and
// makes an unknown shell a usage error (cobra prints help and exits 0).
func addCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			// Without this, an unknown shell prints help and exits 0.
			c.Args = func(_ *cobra.Command, args []string) error {
				if len(args) > 0 {
					return usagef("completion: unknown shell %q: bash, zsh, fish or powershell", args[0])
				}
				return nil
			}
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
	}
	completeValues(root)
}

// completeValues tells the completion scripts the values of the flags and
// arguments that take one of a few words.
func completeValues(root *cobra.Command) {
	words := func(ws ...string) cobra.CompletionFunc {
		return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
			return ws, cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = root.RegisterFlagCompletionFunc("output", words("table", "json"))
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.LocalFlags().Lookup("consistency") != nil {
			_ = c.RegisterFlagCompletionFunc("consistency", words("linearizable", "stale"))
		}
		// The third argument of health and maint is one of a few words.
		third := map[string][]string{"health": {"passing", "warning", "critical"}, "maint": {"on", "off"}}[c.Name()]
		if third != nil && c.Parent() == root {
			c.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
				if len(args) == 2 {
					return third, cobra.ShellCompDirectiveNoFileComp
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
