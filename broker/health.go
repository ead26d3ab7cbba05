package broker

import (
	"encoding/json"
	"strconv"
	"strings"
)

// healthReport is one extra member of the /healthz document.
type healthReport struct {
	key string
	fn  func() any
}

// AddHealth adds the member key to the /healthz JSON document, with the
// value fn returns (encoded as JSON at every request). Call it before
// Start; fn must be fast and safe for concurrent use.
func (s *Server) AddHealth(key string, fn func() any) {
	s.health = append(s.health, healthReport{key: key, fn: fn})
}

// healthExtras returns the extra members, each with a leading comma.
func (s *Server) healthExtras() string {
	if len(s.health) == 0 {
		return ""
	}
	var b strings.Builder
	for _, h := range s.health {
		v, err := json.Marshal(h.fn())
		if err != nil {
			v = []byte(strconv.Quote(err.Error()))
		}
		b.WriteString("," + strconv.Quote(h.key) + ":")
		b.Write(v)
	}
	return b.String()
}
