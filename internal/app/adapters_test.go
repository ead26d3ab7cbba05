package app

import (
	"testing"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
)

// The adapters convert by value: the bridge's constants must keep auth's
// values.
func TestBridgeAuthConstantsMatch(t *testing.T) {
	pairs := []struct {
		name      string
		got, want uint8
	}{
		{"NotAuthorized", uint8(bridge.NotAuthorized), uint8(auth.NotAuthorized)},
		{"BadCredentials", uint8(bridge.BadCredentials), uint8(auth.BadCredentials)},
		{"Allowed", uint8(bridge.Allowed), uint8(auth.Allowed)},
		{"Read", uint8(bridge.Read), uint8(auth.Read)},
		{"Write", uint8(bridge.Write), uint8(auth.Write)},
		{"SubDeny", uint8(bridge.SubDeny), uint8(auth.SubDeny)},
		{"SubPartial", uint8(bridge.SubPartial), uint8(auth.SubPartial)},
		{"SubAllow", uint8(bridge.SubAllow), uint8(auth.SubAllow)},
	}
	for _, p := range pairs {
		if p.got != p.want {
			t.Errorf("bridge.%s = %d, auth.%s = %d", p.name, p.got, p.name, p.want)
		}
	}
}
