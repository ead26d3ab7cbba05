//go:build linux

package poller

import "testing"

// The epoll descriptor is waited on through Go's network poller, so an
// idle poller holds no OS thread in epoll_wait.
func TestPollerParksInNetpoller(t *testing.T) {
	g, err := New(1, 64)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.pollers[0].eprc == nil {
		t.Fatal("epoll descriptor not registered with Go's network poller")
	}
}
