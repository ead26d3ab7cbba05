package limit

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// LogInterval is the shortest time between two log lines about the same
// limit; refusals in between are counted and reported with the next line.
const LogInterval = 10 * time.Second

// Recorder counts refusals by limits in the metric
// sockmq_limit_refusals_total{limit="<name>"} and logs them at most once per
// [LogInterval] per limit, saying how many were not logged. Broker and
// bridge may each create one on the same registry: they share the metric.
type Recorder struct {
	vec *prometheus.CounterVec
	log *LogLimiter
}

// LogLimiter writes at most one info line per key every LogInterval and
// reports, with the next line, how many it left out, so that a flood (of
// refusals, failed logins) cannot flood the log. It is safe for
// concurrent use.
type LogLimiter struct {
	log  *slog.Logger
	mu   sync.Mutex
	last map[string]*logState
}

type logState struct {
	at         time.Time
	suppressed int
}

// NewLogLimiter returns a LogLimiter writing to log (nil: discarded).
func NewLogLimiter(log *slog.Logger) *LogLimiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LogLimiter{log: log, last: make(map[string]*logState)}
}

// Info logs msg with attrs at info level unless key was logged less than
// LogInterval ago.
func (l *LogLimiter) Info(key, msg string, attrs ...any) {
	now := time.Now()
	l.mu.Lock()
	st := l.last[key]
	if st == nil {
		st = &logState{}
		l.last[key] = st
	}
	if !st.at.IsZero() && now.Sub(st.at) < LogInterval {
		st.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.at, st.suppressed = now, 0
	l.mu.Unlock()
	if suppressed > 0 {
		attrs = append(attrs, "not_logged_since_last", suppressed)
	}
	l.log.Info(msg, attrs...)
}

// NewRecorder returns a Recorder registered on reg (nil: not exported)
// that logs to log (nil: not logged). names lists limits to export with a
// zero count, so that alerts can use rate() before the first refusal.
func NewRecorder(reg prometheus.Registerer, log *slog.Logger, names ...string) *Recorder {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sockmq_limit_refusals_total",
		Help: "Requests refused or connections closed because a configured limit was reached, by limit.",
	}, []string{"limit"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					vec = existing
				}
			}
		}
	}
	r := &Recorder{vec: vec, log: NewLogLimiter(log)}
	r.Declare(names...)
	return r
}

// Declare exports the named limits with their current count (zero if new).
func (r *Recorder) Declare(names ...string) {
	for _, n := range names {
		r.vec.WithLabelValues(n)
	}
}

// Hit counts one refusal by the limit name and logs msg with attrs at info
// level unless that limit was logged less than LogInterval ago. attrs
// should include the configuration key and its value, so the operator
// knows what to change.
func (r *Recorder) Hit(name, msg string, attrs ...any) {
	r.vec.WithLabelValues(name).Inc()
	r.log.Info(name, msg, append([]any{"limit", name}, attrs...)...)
}

// Count returns how many refusals the limit name has recorded (for tests
// and /healthz).
func (r *Recorder) Count(name string) float64 {
	var m dto.Metric
	if err := r.vec.WithLabelValues(name).Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
