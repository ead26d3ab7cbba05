// Package netutil holds small address helpers shared by the configuration
// checks of several packages. Its functions are pure and safe for
// concurrent use.
package netutil

import "net"

// IsLoopback reports whether addr ("host:port") names this machine only:
// localhost or a loopback IP. An address without a port, or with an
// empty host (every interface), is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
