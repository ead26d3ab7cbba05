package auth

import (
	"strings"

	"github.com/sockmq/sockmq/internal/topic"
)

// Topic names and filters follow internal/topic (validation, matching,
// filter relations); what is ACL-specific lives here: patterns with %u and
// %c.

// matchSubst is topic.Match where, if subst is set, "%u" and "%c" in f's
// levels stand for user and cid. Callers ensure user and cid contain no '+',
// '#' or '/'.
func matchSubst(f, t, user, cid string, subst bool) bool {
	if t == "" || f == "" {
		return false
	}
	if t[0] == '$' && topic.WildcardFirst(f) {
		return false
	}
	for {
		fl, frest, fmore := topic.NextLevel(f)
		if fl == "#" {
			return true
		}
		tl, trest, tmore := topic.NextLevel(t)
		if fl != "+" {
			if subst {
				if !levelEqSubst(fl, tl, user, cid) {
					return false
				}
			} else if fl != tl {
				return false
			}
		}
		switch {
		case !fmore:
			return !tmore
		case !tmore:
			return frest == "#" // "a/#" matches "a"
		}
		f, t = frest, trest
	}
}

// levelEqSubst reports whether pattern level p, with "%u" and "%c" replaced
// by user and cid, equals l. It does not allocate.
func levelEqSubst(p, l, user, cid string) bool {
	for p != "" {
		if len(p) >= 2 && p[0] == '%' && (p[1] == 'u' || p[1] == 'c') {
			v := user
			if p[1] == 'c' {
				v = cid
			}
			if !strings.HasPrefix(l, v) {
				return false
			}
			l, p = l[len(v):], p[2:]
			continue
		}
		if l == "" || l[0] != p[0] {
			return false
		}
		l, p = l[1:], p[1:]
	}
	return l == ""
}

// substitute returns pattern p with "%u" and "%c" replaced.
func substitute(p, user, cid string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	return strings.NewReplacer("%u", user, "%c", cid).Replace(p)
}
