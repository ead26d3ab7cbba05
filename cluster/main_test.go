package cluster_test

import (
	"os"
	"testing"
	"time"

	"github.com/sockmq/sockmq/internal/testutil"
)

// TestMain gives message waits more room: a delivery here crosses three
// in-process nodes and a JetStream stream replicated by Raft on three
// servers, all under -race on a 2-core CI machine that also runs another
// package's tests.
func TestMain(m *testing.M) {
	testutil.MessageWait = 15 * time.Second
	os.Exit(m.Run())
}
