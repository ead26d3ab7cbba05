package auth

import "github.com/sockmq/sockmq/internal/topic"

// ReadScope is what one identity may read, compiled from the ACL so that
// walks over a tree of topics (retained messages) can skip every subtree the
// identity cannot read instead of checking each topic in it. A nil
// *ReadScope means everything is readable (no ACL file).
//
// A ReadScope is a snapshot of the rules when it was made and is safe for
// concurrent use.
type ReadScope struct {
	none  bool     // an unsafe deny pattern applies: nothing is readable
	deny  []string // deny filters, patterns substituted
	grant []string // filters granting read, patterns substituted
}

// ReadScope compiles the rules that decide what id may read.
func (a *ACL) ReadScope(id Identity) *ReadScope {
	okU, okC := idFlags(id)
	sc := &ReadScope{}
	add := func(r *rule, pattern bool) {
		f := r.filter
		if pattern && (r.usesU || r.usesC) {
			if (r.usesU && !okU) || (r.usesC && !okC) {
				sc.none = sc.none || r.access == accDeny // as in Allowed
				return
			}
			f = substitute(f, id.Username, id.ClientID)
		}
		switch {
		case r.access == accDeny:
			sc.deny = append(sc.deny, f)
		case Access(r.access)&Read != 0:
			sc.grant = append(sc.grant, f)
		}
	}
	if rs := a.userRules(id); rs != nil {
		for i := range rs.deny {
			add(&rs.deny[i], false)
		}
		for i := range rs.grant {
			add(&rs.grant[i], false)
		}
	}
	for i := range a.patterns.deny {
		add(&a.patterns.deny[i], true)
	}
	for i := range a.patterns.grant {
		add(&a.patterns.grant[i], true)
	}
	return sc
}

// ReadScope compiles what id may read under the current rules; nil when no
// ACL file is configured (everything is readable).
func (s *Service) ReadScope(id Identity) *ReadScope {
	sn := s.cur.Load()
	if sn.acl == nil {
		return nil
	}
	return sn.acl.ReadScope(id)
}

// Under decides what may be read among the topic name prefix and every
// topic below it (prefix + "/..."): [SubDeny] if none of them, [SubAllow]
// if all of them, [SubPartial] if some may be (check each topic with
// [ACL.Allowed]). Like [ACL.Subscription] it is conservative: SubPartial
// may be answered where in fact nothing is readable. It does not allocate.
func (sc *ReadScope) Under(prefix string) SubDecision {
	if sc == nil {
		return SubAllow
	}
	if sc.none {
		return SubDeny
	}
	denyIntersects := false
	for _, d := range sc.deny {
		if topic.CoversUnder(d, prefix) {
			return SubDeny
		}
		denyIntersects = denyIntersects || topic.IntersectsUnder(d, prefix)
	}
	var covers, intersects bool
	for _, g := range sc.grant {
		if topic.CoversUnder(g, prefix) {
			covers = true
			break
		}
		intersects = intersects || topic.IntersectsUnder(g, prefix)
	}
	switch {
	case covers && !denyIntersects:
		return SubAllow
	case covers || intersects:
		return SubPartial
	}
	return SubDeny
}
