package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// netTopo puts each node in a network namespace of its own, attached to a
// bridge in the host namespace where the harness runs:
//
//	harness 10.231.X.1 ── bridge ── veth ── [netns n1: 10.231.X.11]
//	                              └─ veth ── [netns n2: 10.231.X.12] ...
//
// A partition is iptables DROP rules inside the nodes' namespaces between
// node addresses only, so the harness (the clients) still reaches every
// node: a partitioned old leader can be asked for a linearizable read. A
// slow network is tc netem on the node's interface when the kernel has it,
// otherwise iptables random loss plus a tbf rate limit.
type netTopo struct {
	tag    string // short random tag in every name, so runs do not collide
	subnet string // "10.231.X"
	bridge string
	hostIP string
	mu     sync.Mutex
	netns  map[string]string // node id → netns name
	ips    map[string]string // node id → address
	log    func(format string, args ...any)
}

// netnsUsable reports whether per-node network namespaces can be built here,
// and why not.
func netnsUsable() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "not root"
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return false, tool + " not installed (apt-get install -y iproute2 iptables)"
		}
	}
	name := fmt.Sprintf("rcprobe%04x", rand.IntN(1<<16))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return false, "ip netns add failed: " + strings.TrimSpace(string(out))
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "netns", "exec", name, "iptables", "-L", "INPUT").CombinedOutput(); err != nil {
		return false, "iptables inside a namespace failed: " + strings.TrimSpace(string(out))
	}
	return true, ""
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newNetTopo(logf func(string, ...any)) (*netTopo, error) {
	x := rand.IntN(200) + 20
	t := &netTopo{
		tag:    fmt.Sprintf("%04x", rand.IntN(1<<16)),
		subnet: fmt.Sprintf("10.231.%d", x),
		netns:  map[string]string{},
		ips:    map[string]string{},
		log:    logf,
	}
	t.bridge = "rcb" + t.tag
	t.hostIP = t.subnet + ".1"
	steps := [][]string{
		{"ip", "link", "add", t.bridge, "type", "bridge"},
		{"ip", "addr", "add", t.hostIP + "/24", "dev", t.bridge},
		{"ip", "link", "set", t.bridge, "up"},
		// Docker sets the FORWARD policy to DROP, and bridged traffic passes
		// iptables when br_netfilter is loaded: let our bridge forward.
		{"iptables", "-I", "FORWARD", "-i", t.bridge, "-o", t.bridge, "-j", "ACCEPT"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

// addNode creates the namespace of node id (slot numbers from 1) and returns
// its netns name and address.
func (t *netTopo) addNode(id string, slot int) (string, string, error) {
	ns := "rc" + t.tag + "-" + id
	ip := fmt.Sprintf("%s.%d", t.subnet, 10+slot)
	host := fmt.Sprintf("rc%s%s", t.tag, id)
	steps := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "link", "set", host, "master", t.bridge, "up"},
		{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return "", "", err
		}
	}
	t.mu.Lock()
	t.netns[id], t.ips[id] = ns, ip
	t.mu.Unlock()
	return ns, ip, nil
}

// block cuts traffic between nodes a and b in both directions.
func (t *netTopo) block(a, b string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range [][2]string{{a, b}, {b, a}} {
		ns, peer := t.netns[p[0]], t.ips[p[1]]
		if ns == "" || peer == "" {
			return fmt.Errorf("no namespace for %s or %s", p[0], p[1])
		}
		if err := run("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", peer, "-j", "DROP"); err != nil {
			return err
		}
		if err := run("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-d", peer, "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// heal removes every partition and slow-network rule.
func (t *netTopo) heal() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []string
	for _, ns := range t.netns {
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			if err := run("ip", "netns", "exec", ns, "iptables", "-F", chain); err != nil {
				errs = append(errs, err.Error())
			}
		}
		_ = exec.Command("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root").Run()
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal: %s", strings.Join(errs, "; "))
	}
	return nil
}

// slow degrades node id's network and describes how.
func (t *netTopo) slow(id string, r *rand.Rand) (string, error) {
	t.mu.Lock()
	ns := t.netns[id]
	t.mu.Unlock()
	if ns == "" {
		return "", fmt.Errorf("no namespace for %s", id)
	}
	if _, err := exec.LookPath("tc"); err == nil {
		delay := 20 + r.IntN(80)
		loss := 2 + r.IntN(8)
		err := run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
			"delay", fmt.Sprintf("%dms", delay), fmt.Sprintf("%dms", delay/2), "loss", fmt.Sprintf("%d%%", loss))
		if err == nil {
			return fmt.Sprintf("tc netem delay %dms±%dms loss %d%%", delay, delay/2, loss), nil
		}
		t.log("tc netem unavailable (%v); emulating a slow network with iptables loss and a tbf rate limit", err)
	}
	loss := 0.05 + r.Float64()*0.10
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		if err := run("ip", "netns", "exec", ns, "iptables", "-A", chain, "-m", "statistic", "--mode", "random",
			"--probability", fmt.Sprintf("%.3f", loss), "-j", "DROP"); err != nil {
			return "", err
		}
	}
	desc := fmt.Sprintf("netem unavailable: iptables random loss %.0f%% each way", loss*100)
	if _, err := exec.LookPath("tc"); err == nil {
		if err := run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf",
			"rate", "2mbit", "burst", "16kbit", "latency", "100ms"); err == nil {
			desc += " + tbf rate 2mbit (queueing delay)"
		}
	}
	return desc, nil
}

// close removes every namespace, link and rule the topology made.
func (t *netTopo) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, ns := range t.netns {
		_ = exec.Command("ip", "link", "del", "rc"+t.tag+id).Run()
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	_ = exec.Command("iptables", "-D", "FORWARD", "-i", t.bridge, "-o", t.bridge, "-j", "ACCEPT").Run()
	_ = exec.Command("ip", "link", "del", t.bridge).Run()
}
