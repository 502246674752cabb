// Package kubernetes holds Roster's Kubernetes manifests; its test checks
// them against the rosterd they run, since no cluster runs here.
package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/roster-registry/roster/internal/e2e"
)

// object is the part of a manifest the test reads.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		ClusterIP                string `yaml:"clusterIP"`
		PublishNotReadyAddresses bool   `yaml:"publishNotReadyAddresses"`
		ServiceName              string `yaml:"serviceName"`
		Replicas                 int    `yaml:"replicas"`
		MaxUnavailable           any    `yaml:"maxUnavailable"`
		Selector                 struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []any `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type container struct {
	Args []string `yaml:"args"`
	Env  []struct {
		Name string `yaml:"name"`
	} `yaml:"env"`
	ReadinessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
	Ports []struct {
		ContainerPort int `yaml:"containerPort"`
	} `yaml:"ports"`
}

func load(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: a document without kind or name", f)
			}
			out = append(out, o)
		}
	}
	return out
}

// rosterdFlags returns the long flags `rosterd --help` lists.
func rosterdFlags(t *testing.T) map[string]bool {
	t.Helper()
	rosterd, _ := e2e.Binaries(t)
	out, err := exec.Command(rosterd, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("rosterd --help: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["initial-cluster-state"] || !flags["non-voter"] {
		t.Fatalf("could not read the flags of rosterd --help:\n%s", out)
	}
	return flags
}

func TestManifestsMatchRosterd(t *testing.T) {
	objs := load(t)
	flags := rosterdFlags(t)
	byKind := map[string][]object{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}

	var headless string
	for _, s := range byKind["Service"] {
		if s.Spec.ClusterIP == "None" {
			headless = s.Metadata.Name
			if !s.Spec.PublishNotReadyAddresses {
				t.Errorf("headless service %s must publish not-ready addresses: nodes resolve peers before they are ready", headless)
			}
		}
	}
	if headless == "" {
		t.Fatal("no headless Service")
	}
	if len(byKind["PodDisruptionBudget"]) == 0 {
		t.Error("no PodDisruptionBudget")
	}

	voters := 0
	for _, s := range byKind["StatefulSet"] {
		if s.Spec.ServiceName != headless {
			t.Errorf("%s: serviceName %q, want the headless %q", s.Metadata.Name, s.Spec.ServiceName, headless)
		}
		for k, v := range s.Spec.Selector.MatchLabels {
			if s.Spec.Template.Metadata.Labels[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pod labels", s.Metadata.Name, k, v)
			}
		}
		if len(s.Spec.Template.Spec.Containers) != 1 {
			t.Fatalf("%s: want one container", s.Metadata.Name)
		}
		c := s.Spec.Template.Spec.Containers[0]
		given := map[string]string{}
		for _, a := range c.Args {
			name, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") || !flags[name] {
				t.Errorf("%s: %q is not a rosterd flag", s.Metadata.Name, a)
			}
			given[name] = val
		}
		for _, e := range c.Env {
			if name, ok := strings.CutPrefix(e.Name, "ROSTER_"); ok {
				flag := strings.ReplaceAll(strings.ToLower(name), "_", "-")
				if !flags[flag] {
					t.Errorf("%s: env %s names no rosterd flag", s.Metadata.Name, e.Name)
				}
				given[flag] = "(env)"
			}
		}
		for _, need := range []string{"node-id", "data-dir", "grpc-addr", "raft-addr", "http-addr", "grpc-advertise"} {
			if _, ok := given[need]; !ok {
				t.Errorf("%s: --%s is not set", s.Metadata.Name, need)
			}
		}
		if c.ReadinessProbe.HTTPGet.Path != "/ready" {
			t.Errorf("%s: readiness probe %q, want /ready", s.Metadata.Name, c.ReadinessProbe.HTTPGet.Path)
		}
		for _, f := range []string{"grpc-addr", "raft-addr", "http-addr"} {
			_, port, _ := strings.Cut(given[f], ":")
			found := false
			for _, p := range c.Ports {
				found = found || port == strconv.Itoa(p.ContainerPort)
			}
			if !found {
				t.Errorf("%s: --%s port %s is not a container port", s.Metadata.Name, f, port)
			}
		}
		switch ic, ok := given["initial-cluster"]; {
		case ok:
			voters++
			if len(s.Spec.VolumeClaimTemplates) == 0 {
				t.Errorf("%s: voters need persistent volumes", s.Metadata.Name)
			}
			if given["initial-cluster-state"] == "" {
				t.Errorf("%s: --initial-cluster-state is not set", s.Metadata.Name)
			}
			peers := strings.Split(ic, ",")
			if len(peers) != s.Spec.Replicas {
				t.Errorf("%s: %d replicas but %d in --initial-cluster", s.Metadata.Name, s.Spec.Replicas, len(peers))
			}
			for i, p := range peers {
				id, addr, _ := strings.Cut(p, "=")
				want := s.Metadata.Name + "-" + strconv.Itoa(i)
				if id != want || !strings.HasPrefix(addr, want+"."+headless+".") {
					t.Errorf("%s: initial cluster entry %q, want %s at %s.%s.…", s.Metadata.Name, p, want, want, headless)
				}
			}
		default:
			if _, ok := given["join"]; !ok {
				t.Errorf("%s: neither --initial-cluster nor --join", s.Metadata.Name)
			}
			if _, ok := given["non-voter"]; !ok {
				t.Errorf("%s: a joining StatefulSet here is for read replicas: --non-voter", s.Metadata.Name)
			}
		}
	}
	if voters != 1 {
		t.Errorf("%d StatefulSets of voters, want 1", voters)
	}
}
