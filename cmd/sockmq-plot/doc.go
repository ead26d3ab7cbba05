// Command sockmq-plot renders the results of scripts/bench.sh --lean (the
// JSON lines of bench/results/lean.jsonl) as SVG line charts, with no
// dependency beyond the standard library:
//
//	rss-vs-connections.svg  server RSS against idle connections held:
//	                        sockmq (MQTT and bridge sockets, one line per
//	                        build), mosquitto, socketcluster-server
//	cpu-per-message.svg     server CPU per message against the delivered
//	                        rate, QoS 1 1 -> 1 (paced at 500..5,000 msg/s
//	                        and as fast as possible, each point at the
//	                        rate actually delivered):
//	                        sockmq (one line per build) and mosquitto
//
// Each point is the median over the repetitions of one run. For every
// sockmq build label the latest run with that label is drawn; the reference
// servers come from the latest run of all.
//
// Usage:
//
//	sockmq-plot [-in bench/results/lean.jsonl] [-out bench/plots]
//
// It is a single-goroutine batch program: it reads the file, writes the
// SVG files and exits.
package main
