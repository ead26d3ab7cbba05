package auth

import "testing"

func TestLevelEqSubst(t *testing.T) {
	tests := []struct {
		p, l, u, c string
		want       bool
	}{
		{"%u", "alice", "alice", "c1", true},
		{"%u", "alic", "alice", "c1", false},
		{"x%u-%c", "xalice-c1", "alice", "c1", true},
		{"x%u-%c", "xalice-c2", "alice", "c1", false},
		{"%%u", "%alice", "alice", "c1", true},
		{"plain", "plain", "", "", true},
		{"%d", "%d", "a", "b", true},
	}
	for _, tt := range tests {
		if got := levelEqSubst(tt.p, tt.l, tt.u, tt.c); got != tt.want {
			t.Errorf("levelEqSubst(%q,%q,%q,%q) = %v", tt.p, tt.l, tt.u, tt.c, got)
		}
		if got := substitute(tt.p, tt.u, tt.c) == tt.l; got != tt.want {
			t.Errorf("substitute(%q) = %q mismatch", tt.p, substitute(tt.p, tt.u, tt.c))
		}
	}
}
