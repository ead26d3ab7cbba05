package broker

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// sockmq replaces mochi's once-a-second scans; this fails if a mochi
// upgrade moves the tickers, so the costly scans cannot come back silently.
func TestMochiExpiryScansStopped(t *testing.T) {
	mq := mqtt.New(&mqtt.Options{})
	if err := stopMochiExpiryScans(mq); err != nil {
		t.Fatal(err)
	}
}
