package broker

import "net/http"

// limitOrigins is the limit label of WebSocket upgrades refused for their
// Origin (sockmq_limit_refusals_total{limit="allowed_origins"}).
const limitOrigins = "allowed_origins"

// checkOrigin applies listeners.http.allowed_origins to a WebSocket upgrade
// on /mqtt: a page from another origin is refused (gorilla answers 403),
// counted and logged without flooding the log.
func (s *Server) checkOrigin(r *http.Request) bool {
	if s.origins.Allowed(r) {
		return true
	}
	s.limits.Hit(limitOrigins, "WebSocket refused: the page's origin is not allowed",
		"origin", r.Header.Get("Origin"), "path", r.URL.Path, "remote", r.RemoteAddr, "key", "listeners.http.allowed_origins")
	return false
}
