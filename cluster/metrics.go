package cluster

import "github.com/prometheus/client_golang/prometheus"

// bpMetrics are the backplane's Prometheus metrics (per node: each node
// serves its own /metrics).
type bpMetrics struct {
	out     *prometheus.CounterVec
	in      prometheus.Counter
	dups    prometheus.Counter
	refused prometheus.Counter
	rtt     prometheus.Gauge
}

func newBPMetrics(reg prometheus.Registerer, b *Backplane) *bpMetrics {
	m := &bpMetrics{
		out: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sockmq_cluster_messages_out_total",
			Help: "Messages this node published to NATS, by class: core (QoS 0, wills) or jetstream (QoS 1/2, stored before the acknowledgement)."}, []string{"class"}),
		in: prometheus.NewCounter(prometheus.CounterOpts{Name: "sockmq_cluster_messages_in_total",
			Help: "Messages from other nodes handed to this node's broker."}),
		dups: prometheus.NewCounter(prometheus.CounterOpts{Name: "sockmq_cluster_duplicates_dropped_total",
			Help: "Second copies of a message from another node (overlapping filters) dropped."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "sockmq_cluster_publish_refused_total",
			Help: "QoS 1/2 publishes refused because NATS/JetStream could not store them."}),
		rtt: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sockmq_cluster_nats_rtt_seconds",
			Help: "Round trip to the NATS server, measured every 2 seconds."}),
	}
	m.out.WithLabelValues("core")
	m.out.WithLabelValues("jetstream")
	if reg != nil {
		reg.MustRegister(m.out, m.in, m.dups, m.refused, m.rtt,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_cluster_peers", Help: "Other nodes heard from within the last 6 seconds."},
				func() float64 { return float64(len(b.Peers())) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sockmq_cluster_connected", Help: "1 while this node is connected to NATS."},
				func() float64 {
					if b.pub.IsConnected() {
						return 1
					}
					return 0
				}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sockmq_cluster_disconnects_total", Help: "NATS connection losses."},
				func() float64 { return float64(b.node.Disconnects()) }),
		)
	}
	return m
}
