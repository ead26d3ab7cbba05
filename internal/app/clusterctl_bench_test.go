package app_test

import (
	"fmt"
	"testing"
)

// BenchmarkConnect measures CONNECT to CONNACK (sequential, clean sessions
// without a will) on a single node and on a node that claims each client
// id in a JetStream KV bucket (one server, replicas 1; a replicated bucket
// adds a Raft round to each write).
func BenchmarkConnect(b *testing.B) {
	for _, mode := range []string{"single", "cluster"} {
		b.Run(mode, func(b *testing.B) {
			node := ""
			if mode == "cluster" {
				node = "a"
			}
			a := startNode(b, startJetStream(b), node, nil)
			b.ResetTimer()
			for i := range b.N {
				c, code := connectRaw(b, a.Broker.MQTTAddr(), 5, fmt.Sprintf("bench-%d", i), "", "")
				if code != 0 {
					b.Fatalf("CONNACK %#x", code)
				}
				c.Close()
			}
		})
	}
}
