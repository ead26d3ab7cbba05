package auth

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sockmq/sockmq/internal/topic"
)

// Access is a kind of topic access: [Read] (receive messages) or [Write]
// (publish). Values may be OR-ed; a check then needs every bit.
type Access uint8

const (
	// Read is permission to receive messages published to a topic.
	Read Access = 1 << iota
	// Write is permission to publish to a topic.
	Write
)

// String returns "read", "write", "readwrite" or "none".
func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Read | Write:
		return "readwrite"
	}
	return "none"
}

// SubDecision is the outcome of authorizing a subscription filter.
type SubDecision uint8

const (
	// SubDeny means the filter can match no topic the client may read: refuse
	// the subscription. It is the zero value.
	SubDeny SubDecision = iota
	// SubPartial means the filter overlaps readable topics but may also match
	// unreadable ones: accept it and check [Read] for every delivery. The
	// decision is conservative: a filter whose readable topics are all
	// denied by other rules may be reported as SubPartial.
	SubPartial
	// SubAllow means every topic the filter can match is readable: no
	// per-delivery check is needed.
	SubAllow
)

// String returns "deny", "partial" or "allow".
func (d SubDecision) String() string {
	switch d {
	case SubAllow:
		return "allow"
	case SubPartial:
		return "partial"
	}
	return "deny"
}

// Identity is who a client is for authorization.
type Identity struct {
	// Username is the MQTT username; meaningful only when Anonymous is false.
	Username string
	// ClientID is the MQTT client identifier, substituted for %c.
	ClientID string
	// Anonymous is true when the client gave no username.
	Anonymous bool
}

const accDeny uint8 = 0 // a rule with no access bits denies

type rule struct {
	filter string
	access uint8 // Read|Write bits; accDeny (0) for deny rules
	line   int
	usesU  bool // pattern contains %u
	usesC  bool // pattern contains %c
}

type ruleSet struct {
	deny  []rule
	grant []rule
}

func (rs *ruleSet) add(r rule) {
	if r.access == accDeny {
		rs.deny = append(rs.deny, r)
	} else {
		rs.grant = append(rs.grant, r)
	}
}

// ACL is a parsed mosquitto-style acl_file. See ACL.md in this package for
// the syntax. In short:
//
//   - "topic [read|write|readwrite|deny] <filter>" lines before any "user"
//     line apply to anonymous clients only; after "user <name>" they apply to
//     that user only (repeated "user" blocks for one name are merged).
//   - "pattern [read|write|readwrite|deny] <filter>" lines apply to every
//     client, wherever they appear; "%u" is replaced by the username and
//     "%c" by the client id.
//   - No access word means readwrite. A matching deny rule wins over every
//     grant. Anything not granted is denied.
//
// An ACL is immutable and safe for concurrent use.
type ACL struct {
	anon     ruleSet
	users    map[string]*ruleSet
	patterns ruleSet
	rules    int
}

// ParseACL parses an ACL file. On malformed lines it returns a
// *[ParseError] naming every bad line, and a nil ACL.
func ParseACL(r io.Reader) (*ACL, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read acl file: %w", err)
	}
	return parseACL(data, "")
}

// LoadACL reads and parses the ACL file at path.
func LoadACL(path string) (*ACL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseACL(data, path)
}

func parseACL(data []byte, name string) (*ACL, error) {
	pe := &ParseError{File: name}
	a := &ACL{users: map[string]*ruleSet{}}
	cur := &a.anon
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		kw, rest := cutSpace(line)
		switch kw {
		case "user":
			if rest == "" {
				pe.add(n, "user: missing username")
				continue
			}
			rs := a.users[rest]
			if rs == nil {
				rs = &ruleSet{}
				a.users[rest] = rs
			}
			cur = rs
		case "topic", "pattern":
			r, err := parseRule(rest, kw == "pattern")
			if err != nil {
				pe.add(n, "%s: %v", kw, err)
				continue
			}
			r.line = n
			a.rules++
			if kw == "pattern" {
				a.patterns.add(r)
			} else {
				cur.add(r)
			}
		default:
			pe.add(n, "unknown keyword %q: want user, topic or pattern", kw)
		}
	}
	if err := pe.orNil(); err != nil {
		return nil, err
	}
	return a, nil
}

// cutSpace splits s at its first run of spaces or tabs; rest is trimmed.
func cutSpace(s string) (first, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i+1:])
}

func parseRule(rest string, pattern bool) (rule, error) {
	r := rule{access: uint8(Read | Write)}
	word, filter := cutSpace(rest)
	switch word {
	case "read":
		r.access = uint8(Read)
	case "write":
		r.access = uint8(Write)
	case "readwrite":
	case "deny":
		r.access = accDeny
	default:
		filter = rest // no access word: the whole rest is the filter
	}
	if filter == "" {
		return r, fmt.Errorf("missing topic filter")
	}
	if topic.ValidFilter(filter) != nil {
		return r, fmt.Errorf("invalid topic filter %q", filter)
	}
	r.filter = filter
	if pattern {
		r.usesU = strings.Contains(filter, "%u")
		r.usesC = strings.Contains(filter, "%c")
	}
	return r, nil
}

// Rules returns the number of topic and pattern rules.
func (a *ACL) Rules() int { return a.rules }

// idFlags reports whether %u and %c may be substituted for id: the value
// must be present and must not contain '+', '#' or '/', which could widen
// a pattern.
func idFlags(id Identity) (okU, okC bool) {
	okU = !id.Anonymous && id.Username != "" && !strings.ContainsAny(id.Username, "+#/")
	okC = id.ClientID != "" && !strings.ContainsAny(id.ClientID, "+#/")
	return okU, okC
}

// userRules returns the topic rules that apply to id, or nil.
func (a *ACL) userRules(id Identity) *ruleSet {
	if id.Anonymous {
		return &a.anon
	}
	return a.users[id.Username]
}

// Allowed reports whether id may access topic with access acc (every bit of
// acc is needed). topic must be a topic name: anything containing '+' or
// '#', empty, or acc == 0 is refused. A pattern deny rule whose %u or %c
// cannot be safely substituted for id matches every topic. Allowed does not
// allocate.
func (a *ACL) Allowed(id Identity, name string, acc Access) bool {
	if acc == 0 || name == "" || strings.ContainsAny(name, "+#") {
		return false
	}
	okU, okC := idFlags(id)
	rs := a.userRules(id)
	if rs != nil {
		for i := range rs.deny {
			if topic.Match(rs.deny[i].filter, name) {
				return false
			}
		}
	}
	for i := range a.patterns.deny {
		r := &a.patterns.deny[i]
		if (r.usesU && !okU) || (r.usesC && !okC) {
			return false
		}
		if matchSubst(r.filter, name, id.Username, id.ClientID, r.usesU || r.usesC) {
			return false
		}
	}
	if rs != nil {
		for i := range rs.grant {
			r := &rs.grant[i]
			if Access(r.access)&acc == acc && topic.Match(r.filter, name) {
				return true
			}
		}
	}
	for i := range a.patterns.grant {
		r := &a.patterns.grant[i]
		if Access(r.access)&acc != acc || (r.usesU && !okU) || (r.usesC && !okC) {
			continue
		}
		if matchSubst(r.filter, name, id.Username, id.ClientID, r.usesU || r.usesC) {
			return true
		}
	}
	return false
}

// Subscription decides whether id may subscribe to filter, which may be a
// shared subscription "$share/<group>/<filter>" (the inner filter is
// checked). Invalid filters are denied. See [SubDecision].
func (a *ACL) Subscription(id Identity, filter string) SubDecision {
	f, ok := StripShare(filter)
	if !ok {
		return SubDeny
	}
	okU, okC := idFlags(id)
	var grantCovers, grantIntersects, denyIntersects bool
	visit := func(r *rule, pattern bool) (deny bool) {
		rf := r.filter
		if pattern && (r.usesU || r.usesC) {
			if (r.usesU && !okU) || (r.usesC && !okC) {
				return r.access == accDeny // unsafe deny pattern denies everything
			}
			rf = substitute(rf, id.Username, id.ClientID)
		}
		if r.access == accDeny {
			if topic.Covers(rf, f) {
				return true
			}
			if topic.Intersects(rf, f) {
				denyIntersects = true
			}
			return false
		}
		if Access(r.access)&Read == 0 {
			return false
		}
		if topic.Covers(rf, f) {
			grantCovers = true
		} else if topic.Intersects(rf, f) {
			grantIntersects = true
		}
		return false
	}
	rs := a.userRules(id)
	if rs != nil {
		for i := range rs.deny {
			if visit(&rs.deny[i], false) {
				return SubDeny
			}
		}
	}
	for i := range a.patterns.deny {
		if visit(&a.patterns.deny[i], true) {
			return SubDeny
		}
	}
	if rs != nil {
		for i := range rs.grant {
			visit(&rs.grant[i], false)
		}
	}
	for i := range a.patterns.grant {
		visit(&a.patterns.grant[i], true)
	}
	switch {
	case grantCovers && !denyIntersects:
		return SubAllow
	case grantCovers || grantIntersects:
		return SubPartial
	}
	return SubDeny
}

// StripShare returns the topic filter inside a shared subscription
// "$share/<group>/<filter>", or filter itself if it is not shared. ok is
// false when the result (or the share group) is invalid.
func StripShare(filter string) (inner string, ok bool) {
	if rest, shared := strings.CutPrefix(filter, "$share/"); shared {
		group, f, found := strings.Cut(rest, "/")
		if !found || group == "" || strings.ContainsAny(group, "+#") {
			return "", false
		}
		filter = f
	}
	return filter, topic.ValidFilter(filter) == nil
}
