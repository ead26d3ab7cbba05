package bridge

import "github.com/prometheus/client_golang/prometheus"

// Limits the bridge counts in sockmq_limit_refusals_total{limit}.
const (
	limitSubscribeRate = "bridge_subscribe_rate"
	limitInvokeRate    = "bridge_invoke_rate"
)

// metrics are the bridge's Prometheus metrics. Topics, channels and socket
// ids never become labels.
type metrics struct {
	sockets           prometheus.Gauge
	filters           prometheus.Gauge
	messagesIn        prometheus.Counter
	messagesOut       prometheus.Counter
	slowConsumers     prometheus.Counter
	subscribesRefused prometheus.Counter
	publishesRefused  prometheus.Counter
	publishWaits      prometheus.Counter
	handshakesRefused *prometheus.CounterVec
	loginFailures     prometheus.Counter
	loginDelayed      prometheus.Counter
	tokensRefused     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sockmq_bridge_sockets_connected", Help: "SocketCluster sockets that completed the handshake and are still open.",
		}),
		filters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sockmq_bridge_broker_subscriptions", Help: "Distinct MQTT filters the bridge is subscribed to on behalf of its sockets.",
		}),
		messagesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_bridge_messages_in_total", Help: "Messages published by SocketCluster sockets into the broker.",
		}),
		messagesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_bridge_messages_out_total", Help: "Channel messages queued to SocketCluster sockets.",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_bridge_slow_consumers_total", Help: "Sockets closed (4100) because their outbound queue exceeded bridge.max_queue_bytes.",
		}),
		subscribesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_bridge_subscribes_refused_total", Help: "Subscribe requests refused (invalid channel, permission, limit).",
		}),
		publishWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_bridge_publish_waits_total",
			Help: "Publishes whose socket already had 256 waiting for a store commit, so the socket's reader waited for this one to be stored.",
		}),
		publishesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_bridge_publishes_refused_total", Help: "Publish requests refused (invalid or reserved channel, permission, broker error).",
		}),
		handshakesRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sockmq_bridge_sockets_refused_total", Help: "Sockets closed before completing the handshake, by reason.",
		}, []string{"reason"}),
		loginFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_bridge_login_failures_total", Help: "Failed login invokes (wrong username or password, or user not allowed).",
		}),
		loginDelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sockmq_bridge_login_delayed_total", Help: "Failed logins whose answer was delayed (per remote address and per socket).",
		}),
		tokensRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sockmq_bridge_tokens_refused_total", Help: "Auth tokens refused at handshake or #authenticate, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{"origin", "timeout", "bad_handshake", "before_handshake", "too_big"} {
		m.handshakesRefused.WithLabelValues(r)
	}
	for _, r := range tokenRefusalReasons {
		m.tokensRefused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.sockets, m.filters, m.messagesIn, m.messagesOut, m.slowConsumers,
			m.subscribesRefused, m.publishesRefused, m.publishWaits, m.handshakesRefused,
			m.loginFailures, m.loginDelayed, m.tokensRefused)
	}
	return m
}
