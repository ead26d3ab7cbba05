package broker

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the broker's Prometheus metrics. Hot-path counters are plain
// atomics exported through CounterFunc/GaugeFunc, so a message costs no
// Prometheus call.
type metrics struct {
	clients         atomic.Int64
	messagesIn      atomic.Uint64
	messagesOut     atomic.Uint64
	packetsIn       atomic.Uint64
	bytesIn         atomic.Uint64
	bytesOut        atomic.Uint64
	dropped         atomic.Uint64
	inflightDropped atomic.Uint64
	publishRefused  atomic.Uint64
	willsSent       atomic.Uint64
	retained        atomic.Int64
	subscriptions   atomic.Int64
	queued          atomic.Int64
	memTrims        atomic.Uint64

	refusedVec  *prometheus.CounterVec
	commitTime  prometheus.Histogram
	commitSizes prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry, s *Server) *metrics {
	m := &metrics{
		refusedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sockmq_connections_refused_total",
			Help: "Connections refused or closed before a session was established, by reason.",
		}, []string{"reason"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sockmq_store_commit_seconds",
			Help:    "Time to commit (and, with persistence.sync, fsync) one batch of store writes; acknowledgements wait for it.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1},
		}),
		commitSizes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sockmq_store_commit_writes",
			Help:    "Writes per store commit (group commit: many clients share one transaction).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096},
		}),
	}
	for _, r := range []string{"bad_credentials", "not_authorized", "client_id", "server_busy", "protocol_version", "protocol", "connect_timeout", "packet_too_large"} {
		m.refusedVec.WithLabelValues(r)
	}
	i64 := func(p *atomic.Int64) func() float64 { return func() float64 { return float64(p.Load()) } }
	u64 := func(p *atomic.Uint64) func() float64 { return func() float64 { return float64(p.Load()) } }
	reg.MustRegister(
		m.refusedVec, m.commitTime, m.commitSizes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_clients_connected", Help: "MQTT clients currently connected."}, i64(&m.clients)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_messages_received_total", Help: "PUBLISH packets received from MQTT clients."}, u64(&m.messagesIn)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_messages_sent_total", Help: "PUBLISH packets sent to MQTT clients."}, u64(&m.messagesOut)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_bytes_received_total", Help: "Bytes received from MQTT clients."}, u64(&m.bytesIn)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_bytes_sent_total", Help: "Bytes sent to MQTT clients."}, u64(&m.bytesOut)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_messages_dropped_total", Help: "QoS 0 messages dropped because a client's queue was full (limits.max_queued_messages) or a message exceeded the client's maximum packet size."}, u64(&m.dropped)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_inflight_dropped_total", Help: "QoS 1/2 messages dropped because a session's queue was full (limits.max_inflight)."}, u64(&m.inflightDropped)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_publishes_refused_total", Help: "PUBLISH packets refused (topic not permitted)."}, u64(&m.publishRefused)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_wills_published_total", Help: "MQTT wills published."}, u64(&m.willsSent)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_retained_messages", Help: "Retained messages held."}, i64(&m.retained)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_subscriptions", Help: "MQTT subscriptions held."}, i64(&m.subscriptions)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_inflight_messages", Help: "QoS 1/2 messages in flight to clients or queued for sessions."}, i64(&m.queued)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_throttle_backlog_messages", Help: "QoS 1/2 messages waiting for connected subscribers beyond their send windows, as counted by the publisher throttle (limits.throttle_queued)."}, i64(&s.throttle.backlog)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_throttle_engaged", Help: "1 while publishers are throttled (the backlog reached limits.throttle_queued and is not yet below half of it)."}, func() float64 {
			if s.throttle.on.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_throttle_engaged_total", Help: "Times the publisher throttle engaged."}, u64(&s.throttle.engaged)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_throttle_pauses_total", Help: "Times a publishing client's socket stopped being read because the publisher throttle was engaged."}, u64(&s.throttle.pauses)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_throttle_stalled_sessions_total", Help: "Sessions whose backlog stopped counting towards the throttle because their client acknowledged nothing for 2s."}, u64(&s.throttle.stalls)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_memory_trims_total", Help: "Times the broker returned freed memory to the operating system after a burst (16 MiB allocated, then 2 quiet seconds)."}, u64(&m.memTrims)),
	)
	_ = reg.Register(collectors.NewGoCollector())
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) refused(reason string) { m.refusedVec.WithLabelValues(reason).Inc() }

func (m *metrics) observeCommit(writes int, took time.Duration) {
	m.commitTime.Observe(took.Seconds())
	m.commitSizes.Observe(float64(writes))
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
