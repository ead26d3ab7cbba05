package broker

import "testing"

func TestConnectionCapFitsTheOpenFileLimit(t *testing.T) {
	for _, tc := range []struct {
		configured int64
		nofile     uint64
		known      bool
		want       int64
		lowered    bool
	}{
		{100000, 1 << 20, true, 100000, false}, // plenty of descriptors
		{100000, 1024, true, 1024 - fdReserve, true},
		{0, 1024, true, 1024 - fdReserve, true}, // "no limit" still fits the descriptors
		{500, 1024, true, 500, false},
		{100000, 200, true, 100, true},            // tiny limit: half of it
		{100000, ^uint64(0), true, 100000, false}, // RLIM_INFINITY
		{100000, 0, false, 100000, false},         // unknown
	} {
		got, lowered := connectionCap(tc.configured, tc.nofile, tc.known)
		if got != tc.want || lowered != tc.lowered {
			t.Errorf("connectionCap(%d, %d, %v) = %d, %v; want %d, %v", tc.configured, tc.nofile, tc.known, got, lowered, tc.want, tc.lowered)
		}
	}
}
