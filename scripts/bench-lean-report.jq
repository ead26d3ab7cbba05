# The --lean section's markdown report (scripts/bench.sh): reads every JSON
# line of the results file (jq -s) and reports the lines of run $run.
# Medians over repetitions; "met" compares with issue 11's targets.

def median: map(select(. != null)) | sort | if length == 0 then null
  elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def r0: if . == null then "-" else (. + 0.5 | floor | tostring) end;
def r1: if . == null then "-" else ((. * 10 + 0.5 | floor) / 10 | tostring) end;
def r2: if . == null then "-" else ((. * 100 + 0.5 | floor) / 100 | tostring) end;
def mb: if . == null then null else . / 1024 end;   # KiB -> MiB
def ratio($a; $b): if $a == null or $b == null or $b == 0 then null else $a / $b end;
# A ratio: two decimals, or three significant digits below 0.01 (a p99
# 1000 times smaller than the reference reads 0.001×, not 0×).
def x: if . == null then "-" elif . > 0 and . < 0.01 then
    (. as $v | ([range(3; 12)] | map(select(($v * pow(10; .)) >= 100)) | first) as $d |
     ($v * pow(10; $d) + 0.5 | floor) / pow(10; $d) | tostring) + "×"
  else (r2 + "×") end;
def yesno(c): if c == null then "-" elif c then "yes" else "**no**" end;
def pct($a; $b): if $a == null or $b == null or $b == 0 then "-" else ($a * 100 / $b | r1) + "%" end;
# least squares fit of [[x, y], ...]: {slope, base}
def fit: if length < 2 then null else
  (map(.[0]) | add / length) as $mx | (map(.[1]) | add / length) as $my |
  (map((.[0] - $mx) * (.[0] - $mx)) | add) as $vx |
  if $vx == 0 then null else
    (map((.[0] - $mx) * (.[1] - $my)) | add / $vx) as $s | {slope: $s, base: ($my - $s * $mx)} end end;

map(select(.section == "lean" and .run == $run)) as $all |
($all[0].build // "?") as $build |
def rows($scen; $srv): $all | map(select(.scenario == $scen and .server == $srv));
def med($scen; $srv; f): rows($scen; $srv) | map(f) | median;
def medn($scen; $srv; $n; f): rows($scen; $srv) | map(select(.n == $n)) | map(f) | median;
def medr($scen; $srv; $rate; f): rows($scen; $srv) | map(select(.offered_rate == $rate)) | map(f) | median;
# per-connection cost: slope of the median RSS after connecting vs connections
def idlefit($scen; $srv): rows($scen; $srv) | group_by(.n) |
  map([(map(.connected) | median), (map(.rss_after_kib) | median)]) | map(select(.[0] != null and .[1] != null)) | fit;
def toolnote($scen; $srv; $rate): (rows($scen; $srv) | map(select(.offered_rate == $rate)) | map(.client_core_util) | median) as $u |
  if $u == null then "" elif $u >= 0.95 then " (tool-limited)" else "" end;

(idlefit("idle-mqtt"; "sockmq")) as $fm |
(idlefit("idle-mqtt"; "mosquitto")) as $fq |
(idlefit("idle-sc"; "sockmq")) as $fb |
(idlefit("idle-sc"; "socketcluster-server")) as $fs |
($all | map(select(.scenario == "idle-mqtt")) | map(.n) | max) as $nmax |
(medn("idle-mqtt"; "sockmq"; $nmax; .connected)) as $held |
(medn("idle-mqtt"; "sockmq"; $nmax; .rtt_empty_p99_ms)) as $rtt0 |
(medn("idle-mqtt"; "sockmq"; $nmax; .rtt_held_p99_ms)) as $rtt1 |
(medn("idle-mqtt"; "mosquitto"; $nmax; .rtt_empty_p99_ms)) as $qrtt0 |
(medn("idle-mqtt"; "mosquitto"; $nmax; .rtt_held_p99_ms)) as $qrtt1 |
(med("state-retained"; "sockmq"; .rss_over_empty_kib) | mb) as $ret |
(med("state-retained"; "mosquitto"; .rss_over_empty_kib) | mb) as $qret |
(med("state-queued"; "sockmq"; .rss_over_empty_kib) | mb) as $que |
(med("state-queued"; "mosquitto"; .rss_over_empty_kib) | mb) as $qque |
(medr("cpu-qos1-1to1"; "sockmq"; 2000; .cpu_us_per_msg)) as $c2k |
(medr("cpu-qos1-1to1"; "mosquitto"; 2000; .cpu_us_per_msg)) as $qc2k |
(medr("cpu-qos1-1to1"; "sockmq"; 0; .cpu_us_per_msg)) as $cfull |
(medr("cpu-qos1-1to1"; "mosquitto"; 0; .cpu_us_per_msg)) as $qcfull |
(medr("cpu-qos1-fanin-16to1"; "sockmq"; 0; .cpu_us_per_msg)) as $cfan |
(medr("cpu-qos1-fanin-16to1"; "mosquitto"; 0; .cpu_us_per_msg)) as $qcfan |
(medr("cpu-qos1-1to1"; "sockmq"; 0; .deliver_rate)) as $dfull |
(medr("cpu-qos1-1to1"; "mosquitto"; 0; .deliver_rate)) as $qdfull |
(medr("cpu-qos1-fanin-16to1"; "sockmq"; 0; .deliver_rate)) as $dfan |
(medr("cpu-qos1-fanin-16to1"; "mosquitto"; 0; .deliver_rate)) as $qdfan |
(med("lat-qos1-1to100-1000"; "sockmq"; .lat_p99_ms)) as $l99 |
(med("lat-qos1-1to100-1000"; "mosquitto"; .lat_p99_ms)) as $ql99 |
(med("xproto-mqtt-to-sc-1"; "sockmq"; .lat_p99_ms)) as $x1 |
(med("xproto-mqtt-to-sc-10"; "sockmq"; .lat_p99_ms)) as $x10 |
def row($m; $a; $b; $c; $rat; $t; $met): "| \($m) | \($a) | \($b) | \($c) | \($rat) | \($t) | \($met) |";

[
"",
"## Lean: memory and CPU (issue 11), sockmq build \"\($build)\", run \($run)",
"",
"Medians of \($all | map(.rep) | max // 0) repetitions. Paste these rows into BENCHMARKS.md (section \"Lean: memory and CPU (issue 11)\").",
"",
"| measure | sockmq | mosquitto | socketcluster-server | sockmq ÷ reference | target | met |",
"|---|---:|---:|---:|---:|---|---|",
row("RSS per idle MQTT connection (CONNECT + 1 sub), KiB, fit over \($all | map(select(.scenario == "idle-mqtt")) | map(.n) | unique | map(tostring) | join("/"))"; $fm.slope | r2; $fq.slope | r2; "";
    ratio($fm.slope; $fq.slope) | x; "<= 6 KiB"; yesno(if $fm == null then null else $fm.slope <= 6 end)),
row("RSS per idle bridge / SC socket, KiB, fit over \($all | map(select(.scenario == "idle-sc")) | map(.n) | unique | map(tostring) | join("/"))"; $fb.slope | r2; ""; $fs.slope | r2;
    ratio($fb.slope; $fs.slope) | x; "<= 8 KiB"; yesno(if $fb == null then null else $fb.slope <= 8 end)),
row("idle MQTT connections held (of \($nmax))"; $held | r0; medn("idle-mqtt"; "mosquitto"; $nmax; .connected) | r0; ""; ""; "\($nmax)"; yesno(if $held == null then null else $held >= $nmax end)),
row("healthy client's round trip p99 (QoS 1, 200 msg/s), empty → \($nmax) idle held, ms"; "\($rtt0 | r2) → \($rtt1 | r2)"; "\($qrtt0 | r2) → \($qrtt1 | r2)"; "";
    ""; "unaffected (held <= 2 × empty + 1 ms)"; yesno(if $rtt0 == null or $rtt1 == null then null else $rtt1 <= 2 * $rtt0 + 1 end)),
row("1M idle MQTT connections, extrapolated (RSS = base + n × per-conn)"; if $fm == null then "-" else "\(($fm.base + 1e6 * $fm.slope) / 1048576 | r2) GiB" end;
    if $fq == null then "-" else "\(($fq.base + 1e6 * $fq.slope) / 1048576 | r2) GiB" end; ""; ""; "<= 5.7 GiB (6 KiB × 1M)"; ""),
row("RSS over empty, 100,000 retained 64 B messages, MiB"; $ret | r1; $qret | r1; ""; ratio($ret; $qret) | x; "<= 40 MB"; yesno(if $ret == null then null else $ret * 1.048576 <= 40 end)),
row("RSS over empty, 100 offline sessions × 1,000 queued QoS 1, MiB"; $que | r1; $qque | r1; ""; ratio($que; $qque) | x; "<= 20 MB"; yesno(if $que == null then null else $que * 1.048576 <= 20 end)),
row("server CPU per message, QoS 1 1→1 paced 2,000 msg/s, µs\(toolnote("cpu-qos1-1to1"; "sockmq"; 2000))"; $c2k | r1; $qc2k | r1; ""; ratio($c2k; $qc2k) | x; "<= 1.2× mosquitto"; yesno(ratio($c2k; $qc2k) | if . == null then null else . <= 1.2 end)),
row("server CPU per message, QoS 1 1→1 full rate, µs\(toolnote("cpu-qos1-1to1"; "sockmq"; 0))"; $cfull | r1; $qcfull | r1; ""; ratio($cfull; $qcfull) | x; "<= mosquitto"; yesno(ratio($cfull; $qcfull) | if . == null then null else . <= 1 end)),
row("server CPU per message, QoS 1 fan-in 16→1 full rate, µs\(toolnote("cpu-qos1-fanin-16to1"; "sockmq"; 0))"; $cfan | r1; $qcfan | r1; ""; ratio($cfan; $qcfan) | x; "<= mosquitto"; yesno(ratio($cfan; $qcfan) | if . == null then null else . <= 1 end)),
row("deliveries/s, QoS 1 1→1 full rate\(toolnote("cpu-qos1-1to1"; "sockmq"; 0))"; $dfull | r0; $qdfull | r0; ""; ratio($dfull; $qdfull) | x; ">= 1.5× mosquitto"; yesno(ratio($dfull; $qdfull) | if . == null then null else . >= 1.5 end)),
row("deliveries/s, QoS 1 fan-in 16→1\(toolnote("cpu-qos1-fanin-16to1"; "sockmq"; 0))"; $dfan | r0; $qdfan | r0; ""; ratio($dfan; $qdfan) | x; ">= 1.5× mosquitto"; yesno(ratio($dfan; $qdfan) | if . == null then null else . >= 1.5 end)),
row("QoS 1 1→100 at 1,000 msg/s: p99 from the scheduled time, ms\(toolnote("lat-qos1-1to100-1000"; "sockmq"; 1000))"; $l99 | r1; $ql99 | r1; ""; ratio($l99; $ql99) | x; "<= mosquitto"; yesno(ratio($l99; $ql99) | if . == null then null else . <= 1 end)),
row("… never sent / still on the way when publishing ended (of deliveries)";
    "\(med("lat-qos1-1to100-1000"; "sockmq"; .never_sent) | r0) / \(pct(med("lat-qos1-1to100-1000"; "sockmq"; .pending_at_pub_end); med("lat-qos1-1to100-1000"; "sockmq"; .expected)))";
    "\(med("lat-qos1-1to100-1000"; "mosquitto"; .never_sent) | r0) / \(pct(med("lat-qos1-1to100-1000"; "mosquitto"; .pending_at_pub_end); med("lat-qos1-1to100-1000"; "mosquitto"; .expected)))";
    ""; ""; "bounded queues"; ""),
row("MQTT → 1 SC socket, QoS 0 64 B at 10,000 msg/s: p99, ms"; $x1 | r2; ""; ""; ""; "<= 2 ms"; yesno(if $x1 == null then null else $x1 <= 2 end)),
row("MQTT → 10 SC sockets, QoS 0 64 B at 10,000 msg/s: p99, ms"; $x10 | r2; ""; ""; ""; "<= 5 ms"; yesno(if $x10 == null then null else $x10 <= 5 end)),
"",
"Per-connection fits (RSS after connecting = base + n × per-conn, medians per n): " +
  ([["sockmq MQTT", $fm], ["mosquitto MQTT", $fq], ["sockmq bridge", $fb], ["socketcluster-server", $fs]] |
   map(select(.[1] != null) | "\(.[0]) \(.[1].base / 1024 | r1) MiB + n × \(.[1].slope | r2) KiB") | join("; ")) + ".",
"",
"### Idle connections (fresh server each; CONNECT + 1 QoS 1 subscription per MQTT connection)",
"",
"| scenario | server | n | connected | KiB/conn | RSS before → after MiB | HWM after MiB | round trip p50 / p99 empty ms | … held ms |",
"|---|---|---:|---:|---:|---|---:|---|---|",
($all | map(select(.scenario | startswith("idle-"))) | group_by([.scenario, .server, .n]) | .[] |
  "| \(.[0].scenario) | \(.[0].server) | \(.[0].n) | \(map(.connected) | median | r0) | \(map(.kib_per_conn) | median | r2) | \(map(.rss_before_kib) | median | mb | r1) → \(map(.rss_after_kib) | median | mb | r1) | \(map(.hwm_after_kib) | median | mb | r1) | \(map(.rtt_empty_p50_ms) | median | r2) / \(map(.rtt_empty_p99_ms) | median | r2) | \(map(.rtt_held_p50_ms) | median | r2) / \(map(.rtt_held_p99_ms) | median | r2) |"),
"",
"### Stored state (fresh server each; RSS and HWM over the empty server)",
"",
"| scenario | server | RSS empty MiB | RSS over empty MiB | HWM over empty MiB | fill s |",
"|---|---|---:|---:|---:|---:|",
($all | map(select(.scenario | startswith("state-"))) | group_by([.scenario, .server]) | .[] |
  "| \(.[0].scenario) | \(.[0].server) | \(map(.rss_empty_kib) | median | mb | r1) | \(map(.rss_over_empty_kib) | median | mb | r1) | \(map(.hwm_over_empty_kib) | median | mb | r1) | \(map(.fill_secs) | median | r1) |"),
"",
"### Server CPU per message, latency, cross-protocol (offered rate 0 = as fast as possible)",
"",
"| scenario | server | offered msg/s | delivered msg/s | server CPU µs/msg | p50 ms | p99 ms | never sent | not received | pending at end | tool core % |",
"|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
($all | map(select(.offered_rate != null)) | group_by([.scenario, .server, .offered_rate]) | sort_by(.[0].scenario, .[0].offered_rate, .[0].server) | .[] |
  (map(.client_core_util) | median) as $u |
  "| \(.[0].scenario) | \(.[0].server) | \(.[0].offered_rate) | \(map(.deliver_rate) | median | r0) | \(map(.cpu_us_per_msg) | median | r1) | \(map(.lat_p50_ms) | median | r2) | \(map(.lat_p99_ms) | median | r2) | \(map(.never_sent) | median | r0) | \(map(.not_received) | median | r0) | \(map(.pending_at_pub_end) | median | r0) | \(if $u == null then "-" else ($u * 100 | r0) end)\(if ($u // 0) >= 0.95 then " tool-limited" else "" end) |")
] | .[]
