package e2e

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGrpcurlWorksOutOfTheBox talks to a real rosterd with the stock grpcurl
// client: no .proto files, only server reflection and grpc.health.v1.
func TestGrpcurlWorksOutOfTheBox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real process")
	}
	grpcurl, err := exec.LookPath("grpcurl")
	if err != nil {
		t.Skip("grpcurl is not installed; scripts/test.sh installs it")
	}
	rosterd, roster := Binaries(t)
	addr := "127.0.0.1:" + strconv.Itoa(FreePorts(t, 1)[0])
	p := &Proc{ID: "dev", GRPC: addr, LogPath: t.TempDir() + "/dev.log", rosterd: rosterd, t: t,
		args: []string{"--dev", "--grpc-addr", addr, "--http-addr", "127.0.0.1:0", "--dns-addr", ""}}
	p.Start()
	t.Cleanup(p.Kill)
	c := &Cluster{T: t, Roster: roster, Procs: []*Proc{p}}
	c.Leader()

	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(grpcurl, append([]string{"-plaintext", "-max-time", "10"}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	out, stderr, err := run(addr, "list")
	if err != nil {
		t.Fatalf("grpcurl list: %v %s", err, stderr)
	}
	for _, svc := range []string{"roster.v1.Registry", "roster.v1.Cluster", "grpc.health.v1.Health"} {
		if !strings.Contains(out, svc) {
			t.Fatalf("grpcurl list does not show %s:\n%s", svc, out)
		}
	}
	if out, stderr, err = run(addr, "grpc.health.v1.Health/Check"); err != nil || !strings.Contains(out, "SERVING") {
		t.Fatalf("health check: %q %q %v", out, stderr, err)
	}
	out, stderr, err = run("-d", `{"instance":{"service":"web","id":"g1","address":"10.0.0.9","port":8080,"ttl":"30s"}}`,
		addr, "roster.v1.Registry/Register")
	if err != nil || !strings.Contains(out, `"revision"`) {
		t.Fatalf("register with grpcurl: %q %q %v", out, stderr, err)
	}
	_, stderr, err = run("-d", `{"instance":{"service":"Web","id":"g1","address":"10.0.0.9","port":8080}}`,
		addr, "roster.v1.Registry/Register")
	if err == nil || !strings.Contains(stderr, "InvalidArgument") || !strings.Contains(stderr, "lowercase DNS label") {
		t.Fatalf("bad register with grpcurl: want InvalidArgument, got %q %v", stderr, err)
	}
	out, _, err = run("-d", `{"service":"web"}`, addr, "roster.v1.Registry/GetService")
	if err != nil || !strings.Contains(out, `"g1"`) || !strings.Contains(out, `"30s"`) {
		t.Fatalf("get with grpcurl: %q %v", out, err)
	}
	if err := p.Terminate(15 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
}
