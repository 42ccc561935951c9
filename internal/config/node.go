package config

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the YAML nodes visited (aliases are followed, so a small file could
// otherwise expand a lot).
const maxNodes = 1 << 20

// maxMergeDepth bounds nested merge keys ("<<").
const maxMergeDepth = 8

// parser walks the YAML node tree of one file.
type parser struct {
	name   string // the file as named by the caller, for errors
	dir    string // absolute folder of the file, for relative paths
	budget int    // nodes left to visit
	// warnings are what the file allows but should not (Config.Warnings).
	warnings []string
}

// val is a YAML value with the key path and line it is reported under.
type val struct {
	n    *yaml.Node // aliases resolved
	path string
	line int
}

// field is one key of a mapping.
type field struct {
	key     string
	keyLine int
	v       val
}

// item is one element of a list value.
type item struct {
	s    string
	path string
	line int
}

func (p *parser) errf(line int, path, format string, args ...any) *Error {
	return &Error{File: p.name, Line: line, Key: path, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) verr(v val, format string, args ...any) *Error {
	return p.errf(v.line, v.path, format, args...)
}

func (p *parser) ierr(it item, format string, args ...any) *Error {
	return p.errf(it.line, it.path, format, args...)
}

// resolve follows aliases and charges the node budget.
func (p *parser) resolve(n *yaml.Node, path string) (*yaml.Node, error) {
	for i := 0; n.Kind == yaml.AliasNode; i++ {
		if n.Alias == nil || i > 100 {
			return nil, p.errf(n.Line, path, "unresolvable alias *%s", n.Value)
		}
		n = n.Alias
	}
	p.budget--
	if p.budget < 0 {
		return nil, p.errf(n.Line, path, "the file expands to more than %d YAML nodes (aliases?)", maxNodes)
	}
	return n, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isMergeKey(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" &&
		(n.Tag == "" || n.Tag == "!" || n.ShortTag() == "!!merge")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.DocumentNode:
		return "a document"
	}
	return "an unknown node"
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// entries returns the keys of a mapping in file order, merge keys resolved, with
// duplicates rejected. Keys from merges yield to explicit keys.
func (p *parser) entries(v val, what string, depth int) ([]field, error) {
	n := v.n
	if n.Kind != yaml.MappingNode {
		return nil, p.verr(v, "expected a mapping (%s), got %s", what, kindName(n))
	}
	explicit := map[string]int{} // key -> line
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if isMergeKey(k) {
			continue
		}
		kr, err := p.resolve(k, v.path)
		if err != nil {
			return nil, err
		}
		if kr.Kind != yaml.ScalarNode || isNull(kr) {
			return nil, p.errf(k.Line, v.path, "a key must be a plain string, got %s", kindName(kr))
		}
		if first, dup := explicit[kr.Value]; dup {
			return nil, p.errf(k.Line, joinPath(v.path, kr.Value), "duplicate key (first at line %d)", first)
		}
		explicit[kr.Value] = k.Line
	}
	var out []field
	added := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, vn := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			if depth >= maxMergeDepth {
				return nil, p.errf(k.Line, v.path, "merge keys (<<) nested deeper than %d", maxMergeDepth)
			}
			src, err := p.resolve(vn, v.path)
			if err != nil {
				return nil, err
			}
			srcs := []*yaml.Node{src}
			if src.Kind == yaml.SequenceNode {
				srcs = srcs[:0]
				for _, s := range src.Content {
					r, err := p.resolve(s, v.path)
					if err != nil {
						return nil, err
					}
					srcs = append(srcs, r)
				}
			}
			for _, s := range srcs {
				if s.Kind != yaml.MappingNode {
					return nil, p.errf(k.Line, v.path, "a merge key (<<) needs a mapping or a list of mappings, got %s", kindName(s))
				}
				sub, err := p.entries(val{n: s, path: v.path, line: s.Line}, what, depth+1)
				if err != nil {
					return nil, err
				}
				for _, f := range sub {
					if _, ok := explicit[f.key]; ok || added[f.key] {
						continue
					}
					added[f.key] = true
					out = append(out, f)
				}
			}
			continue
		}
		kr, err := p.resolve(k, v.path)
		if err != nil {
			return nil, err
		}
		vr, err := p.resolve(vn, joinPath(v.path, kr.Value))
		if err != nil {
			return nil, err
		}
		added[kr.Value] = true
		// A value is reported at its key's line (a block list or mapping starts on the
		// next line); list elements and nested keys carry their own lines.
		out = append(out, field{key: kr.Value, keyLine: k.Line, v: val{n: vr, path: joinPath(v.path, kr.Value), line: k.Line}})
	}
	return out, nil
}

// obj is a mapping with a fixed set of keys.
type obj struct {
	v      val
	fields map[string]field
}

// object checks that v is a mapping whose keys are all in allowed.
func (p *parser) object(v val, what string, allowed ...string) (*obj, error) {
	fs, err := p.entries(v, what, 0)
	if err != nil {
		return nil, err
	}
	o := &obj{v: v, fields: make(map[string]field, len(fs))}
	for _, f := range fs {
		ok := false
		for _, a := range allowed {
			if a == f.key {
				ok = true
				break
			}
		}
		if !ok {
			return nil, p.errf(f.keyLine, f.v.path, "unknown key; allowed here: %s", strings.Join(allowed, ", "))
		}
		o.fields[f.key] = f
	}
	return o, nil
}

// get returns the value of key, or false when it is absent or null.
func (o *obj) get(key string) (val, bool) {
	f, ok := o.fields[key]
	if !ok || isNull(f.v.n) {
		return val{}, false
	}
	return f.v, true
}

// has reports whether key is present and not null.
func (o *obj) has(key string) bool {
	_, ok := o.get(key)
	return ok
}

// keyLine is the line of key if present, else the mapping's line.
func (o *obj) keyLine(key string) int {
	if f, ok := o.fields[key]; ok {
		return f.keyLine
	}
	return o.v.line
}

func (p *parser) scalar(v val, what string) (string, error) {
	if v.n.Kind != yaml.ScalarNode {
		return "", p.verr(v, "expected %s, got %s", what, kindName(v.n))
	}
	return v.n.Value, nil
}

// str returns a non-empty string.
func (p *parser) str(v val) (string, error) {
	s, err := p.scalar(v, "a string")
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", p.verr(v, "must not be empty")
	}
	return s, nil
}

// oneOf returns a string that must be one of allowed.
func (p *parser) oneOf(v val, allowed ...string) (string, error) {
	s, err := p.scalar(v, "one of "+strings.Join(allowed, ", "))
	if err != nil {
		return "", err
	}
	for _, a := range allowed {
		if s == a {
			return s, nil
		}
	}
	return "", p.verr(v, "%q is not allowed; use one of: %s", s, strings.Join(allowed, ", "))
}

// integer returns an integer in [lo, hi].
func (p *parser) integer(v val, lo, hi int64) (int64, error) {
	s, err := p.scalar(v, "an integer")
	if err != nil {
		return 0, err
	}
	var i int64
	if v.n.ShortTag() != "!!int" || v.n.Decode(&i) != nil {
		return 0, p.verr(v, "%q is not an integer; allowed: %d..%d", s, lo, hi)
	}
	if i < lo || i > hi {
		return 0, p.verr(v, "%d is out of range; allowed: %d..%d", i, lo, hi)
	}
	return i, nil
}

// float returns a number in [lo, hi].
func (p *parser) float(v val, lo, hi float64) (float64, error) {
	s, err := p.scalar(v, "a number")
	if err != nil {
		return 0, err
	}
	tag := v.n.ShortTag()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || (tag != "!!int" && tag != "!!float") || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, p.verr(v, "%q is not a number; allowed: %g..%g", s, lo, hi)
	}
	if f < lo || f > hi {
		return 0, p.verr(v, "%g is out of range; allowed: %g..%g", f, lo, hi)
	}
	return f, nil
}

// boolean accepts true/false (and swanctl's yes/no, on/off).
func (p *parser) boolean(v val) (bool, error) {
	s, err := p.scalar(v, "true or false")
	if err != nil {
		return false, err
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true, nil
	case "false", "no", "off":
		return false, nil
	}
	return false, p.verr(v, "%q is not a boolean; use true or false", s)
}

// duration returns a non-negative Go duration.
func (p *parser) duration(v val) (time.Duration, error) {
	s, err := p.scalar(v, "a duration")
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, p.verr(v, "%q is not a duration; use a Go duration such as 30s, 10m or 4h", s)
	}
	if d < 0 {
		return 0, p.verr(v, "%s is negative; durations must be 0 or more", s)
	}
	return d, nil
}

// list returns the elements of a list of scalars, or a single scalar as one element
// (split at commas, swanctl style, when split is set). Empty elements are an error.
func (p *parser) list(v val, split bool) ([]item, error) {
	switch v.n.Kind {
	case yaml.ScalarNode:
		if !split {
			if v.n.Value == "" {
				return nil, p.verr(v, "must not be empty")
			}
			return []item{{s: v.n.Value, path: v.path, line: v.line}}, nil
		}
		var out []item
		for _, s := range strings.Split(v.n.Value, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				return nil, p.verr(v, "empty element in %q", v.n.Value)
			}
			out = append(out, item{s: s, path: v.path, line: v.line})
		}
		return out, nil
	case yaml.SequenceNode:
		out := make([]item, 0, len(v.n.Content))
		for i, e := range v.n.Content {
			path := fmt.Sprintf("%s[%d]", v.path, i)
			r, err := p.resolve(e, path)
			if err != nil {
				return nil, err
			}
			if r.Kind != yaml.ScalarNode || isNull(r) {
				return nil, p.errf(r.Line, path, "expected a string, got %s", kindName(r))
			}
			if r.Value == "" {
				return nil, p.errf(r.Line, path, "must not be empty")
			}
			out = append(out, item{s: r.Value, path: path, line: r.Line})
		}
		return out, nil
	}
	return nil, p.verr(v, "expected a list or a single value, got %s", kindName(v.n))
}

// seq returns the elements of a list (of anything).
func (p *parser) seq(v val, what string) ([]val, error) {
	if v.n.Kind != yaml.SequenceNode {
		return nil, p.verr(v, "expected a list (%s), got %s", what, kindName(v.n))
	}
	out := make([]val, 0, len(v.n.Content))
	for i, e := range v.n.Content {
		path := fmt.Sprintf("%s[%d]", v.path, i)
		r, err := p.resolve(e, path)
		if err != nil {
			return nil, err
		}
		out = append(out, val{n: r, path: path, line: r.Line})
	}
	return out, nil
}

// addr parses one IP address (no zone, not unspecified unless allowUnspec).
func (p *parser) addr(it item, allowUnspec bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(it.s)
	if err != nil {
		return netip.Addr{}, p.ierr(it, "%q is not an IP address; use an IPv4 or IPv6 address such as 192.0.2.1 or 2001:db8::1", it.s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, p.ierr(it, "%q has a zone; zones are not supported", it.s)
	}
	if !allowUnspec && a.IsUnspecified() {
		return netip.Addr{}, p.ierr(it, "%q is the unspecified address; give a concrete address (or %%any, or nothing, for any)", it.s)
	}
	return a.Unmap(), nil
}

// addrs parses a list of unique addresses.
func (p *parser) addrs(items []item, allowUnspec bool) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(items))
	for _, it := range items {
		a, err := p.addr(it, allowUnspec)
		if err != nil {
			return nil, err
		}
		for _, b := range out {
			if a == b {
				return nil, p.ierr(it, "%s is listed twice", a)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// prefix parses a CIDR prefix. With masked, host bits must be zero; with hostOK a
// bare address is taken as a single-host prefix.
func (p *parser) prefix(it item, masked, hostOK bool) (netip.Prefix, error) {
	if !strings.Contains(it.s, "/") {
		if a, err := netip.ParseAddr(it.s); err == nil && a.Zone() == "" {
			if hostOK {
				a = a.Unmap()
				return netip.PrefixFrom(a, a.BitLen()), nil
			}
			return netip.Prefix{}, p.ierr(it, "%q needs a prefix length, e.g. %s/%d", it.s, a, a.BitLen())
		}
	}
	pf, err := netip.ParsePrefix(it.s)
	if err != nil {
		return netip.Prefix{}, p.ierr(it, "%q is not a CIDR prefix; use e.g. 198.18.0.0/16 or 2001:db8::/64", it.s)
	}
	if pf.Addr().Is4In6() {
		return netip.Prefix{}, p.ierr(it, "%q is an IPv4-mapped IPv6 prefix; write the IPv4 prefix", it.s)
	}
	if masked && pf.Masked() != pf {
		return netip.Prefix{}, p.ierr(it, "%q has host bits set; did you mean %s?", it.s, pf.Masked())
	}
	return pf, nil
}

// path resolves a file path against the config's folder.
func (p *parser) path(s string) string {
	if filepath.IsAbs(s) {
		return filepath.Clean(s)
	}
	return filepath.Join(p.dir, s)
}

// file resolves a path that must name an existing regular file.
func (p *parser) file(it item) (string, error) {
	abs := p.path(it.s)
	fi, err := os.Stat(abs)
	if err != nil {
		return "", p.ierr(it, "%s: %v", abs, unwrapPathError(err))
	}
	if fi.IsDir() {
		return "", p.ierr(it, "%s is a folder; a file is needed", abs)
	}
	return abs, nil
}

// validName checks a connection, child or pool name.
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}
