package broker

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// listenAddr is a listener's configured address, split.
type listenAddr struct {
	key, addr, host string
	port            int
}

// checkListeners reports what would stop Start from listening: addresses
// that are not host:port with a numeric port from 0 to 65535, hosts that are
// neither an IP address nor a host name, two listeners on overlapping
// addresses, and certificate/key pairs that do not load. Host names are not
// resolved here; Start resolves them.
func checkListeners(l Listeners) []error {
	var errs []error
	var addrs []listenAddr
	for _, c := range []struct{ key, addr string }{
		{"listeners.mqtt.address", l.MQTT.Address},
		{"listeners.mqtt_tls.address", l.MQTTTLS.Address},
		{"listeners.http.address", l.HTTP.Address},
	} {
		if c.addr == "" {
			continue
		}
		a, err := parseListenAddr(c.key, c.addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, prev := range addrs {
			if overlaps(prev, a) {
				errs = append(errs, fmt.Errorf("%s: %s overlaps %s (%s): two listeners cannot share a port", a.key, a.addr, prev.key, prev.addr))
			}
		}
		addrs = append(addrs, a)
	}
	if l.MQTTTLS.Address != "" {
		errs = append(errs, checkKeyPair("listeners.mqtt_tls", l.MQTTTLS.CertFile, l.MQTTTLS.KeyFile)...)
	}
	if l.HTTP.CertFile != "" && l.HTTP.KeyFile != "" {
		errs = append(errs, checkKeyPair("listeners.http", l.HTTP.CertFile, l.HTTP.KeyFile)...)
	}
	return errs
}

func parseListenAddr(key, addr string) (listenAddr, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if _, perr := strconv.Atoi(addr); perr == nil {
			return listenAddr{}, fmt.Errorf("%s: %q is not host:port; write 127.0.0.1:%s (this machine only) or 0.0.0.0:%s (every interface)", key, addr, addr, addr)
		}
		return listenAddr{}, fmt.Errorf("%s: %q is not host:port (e.g. 127.0.0.1:1883): %w", key, addr, err)
	}
	if port == "" || strings.Trim(port, "0123456789") != "" {
		return listenAddr{}, fmt.Errorf("%s: port %q is not a number from 0 to 65535", key, port)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n > 65535 {
		return listenAddr{}, fmt.Errorf("%s: port %s is not a number from 0 to 65535", key, port)
	}
	if host != "" && net.ParseIP(host) == nil && !isHostName(host) {
		return listenAddr{}, fmt.Errorf("%s: host %q is not an IP address or a host name", key, host)
	}
	return listenAddr{key: key, addr: addr, host: host, port: n}, nil
}

// isHostName reports whether s is a syntactically valid DNS name.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// overlaps reports whether two listeners would compete for the same socket:
// the same port on the same address, or on a wildcard address covering the
// other (0.0.0.0 covers IPv4 addresses; "" and :: cover every address,
// since Go listens dual-stack on them). Port 0 picks a free port and never
// overlaps.
func overlaps(a, b listenAddr) bool {
	if a.port != b.port || a.port == 0 {
		return false
	}
	ha, hb := canonicalHost(a.host), canonicalHost(b.host)
	if ha == hb || ha == "" || hb == "" || ha == "::" || hb == "::" {
		return true
	}
	ipa, ipb := net.ParseIP(ha), net.ParseIP(hb)
	if ipa == nil || ipb == nil {
		return false // host names are resolved at start
	}
	if ipa.To4() != nil && ipb.To4() != nil && (ipa.IsUnspecified() || ipb.IsUnspecified()) {
		return true
	}
	return ipa.Equal(ipb)
}

func canonicalHost(h string) string {
	if strings.EqualFold(h, "localhost") {
		return "127.0.0.1"
	}
	if ip := net.ParseIP(h); ip != nil {
		if ip.IsUnspecified() && ip.To4() == nil {
			return "::"
		}
		return ip.String()
	}
	return strings.ToLower(h)
}

// checkKeyPair loads a certificate and its key as Start will, when both
// files exist (missing files are reported by Validate).
func checkKeyPair(key, certFile, keyFile string) []error {
	if certFile == "" || keyFile == "" {
		return nil
	}
	for _, p := range []string{certFile, keyFile} {
		if _, err := os.Stat(p); err != nil {
			return nil
		}
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return []error{fmt.Errorf("%s: cannot load cert_file and key_file as a PEM certificate and its private key: %w", key, err)}
	}
	return nil
}
