package bridge

import (
	"log/slog"
	"sync"
	"time"

	"github.com/sockmq/sockmq/internal/limit"
)

// rateLog writes at most one info line per key every limit.LogInterval and
// reports how many it left out, so that a flood (of failed logins or
// refused tokens) cannot flood the log.
type rateLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]*rateLogState
}

type rateLogState struct {
	at         time.Time
	suppressed int
}

func newRateLog(log *slog.Logger) *rateLog {
	return &rateLog{log: log, last: make(map[string]*rateLogState)}
}

// Info logs msg with attrs unless key was logged less than
// limit.LogInterval ago.
func (r *rateLog) Info(key, msg string, attrs ...any) {
	now := time.Now()
	r.mu.Lock()
	st := r.last[key]
	if st == nil {
		st = &rateLogState{}
		r.last[key] = st
	}
	if !st.at.IsZero() && now.Sub(st.at) < limit.LogInterval {
		st.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.at, st.suppressed = now, 0
	r.mu.Unlock()
	if suppressed > 0 {
		attrs = append(attrs, "not_logged_since_last", suppressed)
	}
	r.log.Info(msg, attrs...)
}
