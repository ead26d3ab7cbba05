// Package proctest holds the process-level cluster tests: three
// `sockmq serve` processes started by deploy/cluster/three-nodes.sh (the
// deployment example, so the script is tested too), a node killed with
// SIGKILL, and what the survivors must do about it. It has no non-test
// code.
package proctest
