package httpapi

import (
	"fmt"
	"slices"
	"strings"
)

// A small subset of Consul's filter language (hashicorp/go-bexpr), enough
// for the forms tools send:
//
//	Service.Tags contains "x"        "x" in Service.Tags
//	Service.Meta.k == "v"            Service.Meta.k != "v"
//	"k" in Service.Meta              Service.Tags is empty
//	ServiceMeta.k == "v" and not (ServicePort == 80 or Node == "n")
//
// Operators: ==, !=, contains, not contains, in, not in, is empty, is not
// empty; and, or, not and parentheses. Values are "double-quoted",
// `back-quoted`, or bare words and numbers. Selectors are fixed per
// endpoint (filterSelectors); anything else is refused with a 400 naming
// what is not supported.

// filterValue is what a selector yields for one result.
type filterValue struct {
	kind filterKind
	s    string
	list []string
	m    map[string]string
}

type filterKind int

const (
	kindString filterKind = iota
	kindList
	kindMap
	// kindMissing: a map key that is absent.
	kindMissing
)

// filterResolver yields a selector's value for one result; ok is false for
// a selector the endpoint does not know.
type filterResolver func(sel string) (v filterValue, ok bool)

// filterExpr is a compiled filter.
type filterExpr interface {
	eval(r filterResolver) bool
}

type (
	andExpr struct{ l, r filterExpr }
	orExpr  struct{ l, r filterExpr }
	notExpr struct{ e filterExpr }
	// matchExpr is one comparison of a selector with a value.
	matchExpr struct {
		sel, op, val string
	}
)

func (e andExpr) eval(r filterResolver) bool { return e.l.eval(r) && e.r.eval(r) }
func (e orExpr) eval(r filterResolver) bool  { return e.l.eval(r) || e.r.eval(r) }
func (e notExpr) eval(r filterResolver) bool { return !e.e.eval(r) }

func (e matchExpr) eval(r filterResolver) bool {
	v, _ := r(e.sel)
	switch e.op {
	case "==", "!=":
		eq := v.kind == kindString && v.s == e.val
		return eq == (e.op == "==")
	case "contains", "in":
		return contains(v, e.val)
	case "not contains", "not in":
		return !contains(v, e.val)
	case "is empty":
		return empty(v)
	case "is not empty":
		return !empty(v)
	}
	return false
}

func contains(v filterValue, s string) bool {
	switch v.kind {
	case kindList:
		return slices.Contains(v.list, s)
	case kindMap:
		_, ok := v.m[s]
		return ok
	case kindString:
		return strings.Contains(v.s, s)
	}
	return false
}

func empty(v filterValue) bool {
	switch v.kind {
	case kindList:
		return len(v.list) == 0
	case kindMap:
		return len(v.m) == 0
	case kindString:
		return v.s == ""
	}
	return true
}

// compileFilter parses expr and checks its selectors against known, which
// returns the kind a selector yields and whether it exists.
func compileFilter(expr string, known func(sel string) (filterKind, bool)) (filterExpr, error) {
	toks, err := filterTokens(expr)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks, known: known}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("unexpected %q at the end of the filter", p.toks[p.pos].text)
	}
	return e, nil
}

type filterToken struct {
	text   string
	quoted bool
}

func filterTokens(s string) ([]filterToken, error) {
	var out []filterToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			out = append(out, filterToken{text: string(c)})
			i++
		case c == '=' || c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				out = append(out, filterToken{text: s[i : i+2]})
				i += 2
				continue
			}
			return nil, fmt.Errorf("unsupported operator at %q; the supported ones are ==, !=, contains, in, is empty and their negations", s[i:])
		case c == '"' || c == '`':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if c == '"' && s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at %q", s[i:])
			}
			out = append(out, filterToken{text: b.String(), quoted: true})
			i = j + 1
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\n\r()=!\"`", s[j]) < 0 {
				j++
			}
			out = append(out, filterToken{text: s[i:j]})
			i = j
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty filter")
	}
	return out, nil
}

type filterParser struct {
	toks  []filterToken
	pos   int
	known func(sel string) (filterKind, bool)
}

func (p *filterParser) peek(words ...string) bool {
	if p.pos+len(words) > len(p.toks) {
		return false
	}
	for i, w := range words {
		t := p.toks[p.pos+i]
		if t.quoted || t.text != w {
			return false
		}
	}
	return true
}

func (p *filterParser) or() (filterExpr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek("or") {
		p.pos++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orExpr{l, r}
	}
	return l, nil
}

func (p *filterParser) and() (filterExpr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peek("and") {
		p.pos++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = andExpr{l, r}
	}
	return l, nil
}

func (p *filterParser) unary() (filterExpr, error) {
	switch {
	case p.peek("not"):
		p.pos++
		e, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notExpr{e}, nil
	case p.peek("("):
		p.pos++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.peek(")") {
			return nil, fmt.Errorf("missing )")
		}
		p.pos++
		return e, nil
	}
	return p.match()
}

func (p *filterParser) next() (filterToken, error) {
	if p.pos >= len(p.toks) {
		return filterToken{}, fmt.Errorf("the filter ends too early")
	}
	t := p.toks[p.pos]
	p.pos++
	return t, nil
}

func (p *filterParser) match() (filterExpr, error) {
	first, err := p.next()
	if err != nil {
		return nil, err
	}
	// value in selector, value not in selector
	for _, op := range [][]string{{"in"}, {"not", "in"}} {
		if p.peek(op...) {
			p.pos += len(op)
			sel, err := p.next()
			if err != nil {
				return nil, err
			}
			// On a string selector, in is a substring test, as in bexpr.
			if _, err := p.selector(sel); err != nil {
				return nil, err
			}
			return matchExpr{sel: sel.text, op: strings.Join(op, " "), val: first.text}, nil
		}
	}
	kind, err := p.selector(first)
	if err != nil {
		return nil, err
	}
	for _, op := range [][]string{{"is", "not", "empty"}, {"is", "empty"}} {
		if p.peek(op...) {
			p.pos += len(op)
			return matchExpr{sel: first.text, op: strings.Join(op, " ")}, nil
		}
	}
	var op string
	switch {
	case p.peek("=="), p.peek("!="), p.peek("contains"):
		op = p.toks[p.pos].text
		p.pos++
	case p.peek("not", "contains"):
		op = "not contains"
		p.pos += 2
	default:
		if p.pos < len(p.toks) {
			return nil, fmt.Errorf("unsupported operator %q after %s; the supported ones are ==, !=, contains, in, is empty and their negations", p.toks[p.pos].text, first.text)
		}
		return nil, fmt.Errorf("missing operator after %s", first.text)
	}
	if (op == "==" || op == "!=") && kind != kindString {
		return nil, fmt.Errorf("%s is a list or map: use contains, in or is empty, not %s", first.text, op)
	}
	val, err := p.next()
	if err != nil {
		return nil, err
	}
	if !val.quoted && (val.text == "(" || val.text == ")" || val.text == "==" || val.text == "!=") {
		return nil, fmt.Errorf("expected a value after %s %s", first.text, op)
	}
	return matchExpr{sel: first.text, op: op, val: val.text}, nil
}

func (p *filterParser) selector(t filterToken) (filterKind, error) {
	if t.quoted {
		return 0, fmt.Errorf("expected a selector, found the string %q", t.text)
	}
	kind, ok := p.known(t.text)
	if !ok {
		return 0, fmt.Errorf("unsupported selector %q", t.text)
	}
	return kind, nil
}

// filterSelectors describes the selectors of one endpoint's results:
// fixed names, and map prefixes whose keys follow a dot (Service.Meta.k).
type filterSelectors struct {
	fields map[string]filterKind
	maps   []string
}

// known reports a selector's kind.
func (f filterSelectors) known(sel string) (filterKind, bool) {
	if k, ok := f.fields[sel]; ok {
		return k, true
	}
	for _, m := range f.maps {
		if sel == m {
			return kindMap, true
		}
		if key, ok := strings.CutPrefix(sel, m+"."); ok && key != "" {
			return kindString, true
		}
	}
	return 0, false
}

// names lists the selectors for error messages.
func (f filterSelectors) names() string {
	var out []string
	for k := range f.fields {
		out = append(out, k)
	}
	for _, m := range f.maps {
		out = append(out, m, m+".<key>")
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// resolve reads a selector from fields: strings, lists and maps keyed by
// selector name.
func resolveFrom(strs map[string]string, lists map[string][]string, maps map[string]map[string]string) filterResolver {
	return func(sel string) (filterValue, bool) {
		if s, ok := strs[sel]; ok {
			return filterValue{kind: kindString, s: s}, true
		}
		if l, ok := lists[sel]; ok {
			return filterValue{kind: kindList, list: l}, true
		}
		if m, ok := maps[sel]; ok {
			return filterValue{kind: kindMap, m: m}, true
		}
		for name, m := range maps {
			if key, ok := strings.CutPrefix(sel, name+"."); ok {
				if v, ok := m[key]; ok {
					return filterValue{kind: kindString, s: v}, true
				}
				return filterValue{kind: kindMissing}, true
			}
		}
		return filterValue{kind: kindMissing}, false
	}
}
