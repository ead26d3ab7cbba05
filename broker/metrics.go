package broker

import (
	"net/http"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the broker's Prometheus metrics. Counters that mochi already
// keeps are exported as functions of its atomics, so the hot path pays
// nothing extra.
type metrics struct {
	refusedVec *prometheus.CounterVec
	dropped    prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, mq *mqtt.Server) *metrics {
	info := mq.Info
	load := func(p *int64) func() float64 { return func() float64 { return float64(atomic.LoadInt64(p)) } }
	m := &metrics{
		refusedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sockmq_connections_refused_total",
			Help: "Connections refused or closed before a session was established, by reason.",
		}, []string{"reason"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_messages_dropped_total",
			Help: "Messages dropped because a client's outbound queue was full.",
		}),
	}
	for _, r := range []string{"bad_credentials", "not_authorized", "client_id", "server_busy", "protocol_version", "protocol", "connect_timeout", "packet_too_large"} {
		m.refusedVec.WithLabelValues(r) // export zeros so alerts can use rate()
	}
	reg.MustRegister(
		m.refusedVec, m.dropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_clients_connected", Help: "MQTT clients currently connected."}, load(&info.ClientsConnected)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_messages_received_total", Help: "PUBLISH packets received from MQTT clients."}, load(&info.MessagesReceived)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_messages_sent_total", Help: "PUBLISH packets sent to MQTT clients."}, load(&info.MessagesSent)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_bytes_received_total", Help: "Bytes received from MQTT clients."}, load(&info.BytesReceived)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_bytes_sent_total", Help: "Bytes sent to MQTT clients."}, load(&info.BytesSent)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_retained_messages", Help: "Retained messages held."}, load(&info.Retained)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_subscriptions", Help: "MQTT subscriptions held."}, load(&info.Subscriptions)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_inflight_messages", Help: "QoS 1/2 messages in flight or queued for offline sessions."}, load(&info.Inflight)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_inflight_dropped_total", Help: "QoS 1/2 messages dropped because a session's inflight limit was reached."}, load(&info.InflightDropped)),
	)
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		_ = err // already registered by the caller
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		_ = err
	}
	return m
}

func (m *metrics) refused(reason string) { m.refusedVec.WithLabelValues(reason).Inc() }

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
