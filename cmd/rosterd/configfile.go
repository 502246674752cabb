package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets every flag given neither on the command line nor in
// the environment from the YAML file --config-file names: one key a flag,
// named as the flag without its dashes (node-id: n1). A list is accepted
// only where a flag takes a comma-separated list (join, initial-cluster:
// those marked with commaListAnnotation). The command line wins over the
// environment, which wins over the file.
//
// Unknown keys, nested maps and a second mention of a key are errors, so a
// misspelt setting is never silently ignored.
func applyConfigFile(cmd *cobra.Command, path string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return usagef("--config-file: %v", err)
	}
	settings, err := parseConfigFile(b, cmd.Flags())
	if err != nil {
		return usagef("--config-file %s: %v", path, err)
	}
	for _, s := range settings {
		fl := cmd.Flags().Lookup(s.name)
		if fl.Changed {
			continue // the command line or the environment set it
		}
		if err := cmd.Flags().Set(s.name, s.value); err != nil {
			return usagef("--config-file %s: line %d: %s: %v", path, s.line, s.name, err)
		}
	}
	return nil
}

// commaListAnnotation marks a flag that takes a comma-separated list, so a
// config file may give it as a YAML list.
const commaListAnnotation = "rosterd_comma_list"

// cobraFlags are the flags cobra adds itself; they are no settings.
var cobraFlags = map[string]bool{"help": true, "version": true}

// setting is one key of a config file.
type setting struct {
	name, value string
	line        int
}

// parseConfigFile reads a config file's settings, checking each key names
// a flag of fs. An empty file sets nothing.
func parseConfigFile(b []byte, fs *pflag.FlagSet) ([]setting, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, fmt.Errorf("not YAML: %v", err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		line := more.Line
		if len(more.Content) > 0 {
			line = more.Content[0].Line
		}
		return nil, fmt.Errorf("line %d: a second YAML document; put every setting in one", line)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want settings as \"flag-name: value\" lines", root.Line)
	}
	var out []setting
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := strings.TrimPrefix(k.Value, "--")
		fl := fs.Lookup(name)
		switch {
		case fl == nil || cobraFlags[name]:
			return nil, fmt.Errorf("line %d: unknown setting %q%s", k.Line, k.Value, suggestFlag(fs, name))
		case name == "config-file":
			return nil, fmt.Errorf("line %d: config-file cannot be set in a config file", k.Line)
		}
		if first, ok := seen[name]; ok {
			return nil, fmt.Errorf("line %d: %s is set twice (first on line %d)", k.Line, name, first)
		}
		seen[name] = k.Line
		if v.Kind == yaml.SequenceNode && fl.Annotations[commaListAnnotation] == nil {
			return nil, fmt.Errorf("line %d: %s takes one value, not a list", v.Line, name)
		}
		value, err := settingValue(v)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %v", v.Line, name, err)
		}
		out = append(out, setting{name: name, value: value, line: v.Line})
	}
	return out, nil
}

// settingValue is a value as its flag would take it on the command line: a
// scalar as written, a list of scalars joined by commas.
func settingValue(v *yaml.Node) (string, error) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "", errors.New("no value (write \"\" for an empty one)")
		}
		return v.Value, nil
	case yaml.SequenceNode:
		parts := make([]string, 0, len(v.Content))
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return "", errors.New("a list may hold only plain values")
			}
			if strings.Contains(e.Value, ",") {
				return "", fmt.Errorf("list entry %q holds a comma: give it as one value or as a list, not both", e.Value)
			}
			parts = append(parts, e.Value)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", errors.New("want a value or a list of values, not a map")
	}
}

// suggestFlag names flags close to a misspelt one: those it is a prefix of,
// or one edit away.
func suggestFlag(fs *pflag.FlagSet, name string) string {
	var near []string
	fs.VisitAll(func(fl *pflag.Flag) {
		if cobraFlags[fl.Name] {
			return
		}
		if strings.HasPrefix(fl.Name, name) || editDistanceAtMostOne(fl.Name, name) {
			near = append(near, fl.Name)
		}
	})
	if len(near) == 0 || len(near) > 3 {
		return " (see rosterd --help for the flags; keys are their names without dashes)"
	}
	sort.Strings(near)
	return "; did you mean " + strings.Join(near, " or ") + "?"
}

// editDistanceAtMostOne reports whether a becomes b by at most one
// insertion, deletion or substitution.
func editDistanceAtMostOne(a, b string) bool {
	if len(a) < len(b) {
		a, b = b, a
	}
	if len(a)-len(b) > 1 {
		return false
	}
	i := 0
	for i < len(b) && a[i] == b[i] {
		i++
	}
	if len(a) == len(b) {
		return a[i+min(1, len(a)-i):] == b[i+min(1, len(b)-i):]
	}
	return a[i+1:] == b[i:]
}
