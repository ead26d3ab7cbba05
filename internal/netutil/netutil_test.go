package netutil

import "testing"

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "localhost:6222": true, "[::1]:80": true, "127.5.5.5:1": true,
		"0.0.0.0:1883": false, ":1883": false, "10.0.0.1:6222": false, "127.0.0.1": false, "example.com:1": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
