package bridge_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/bridge"
)

func TestConfigValidate(t *testing.T) {
	if err := bridge.Defaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := (bridge.Config{}).Validate(); err != nil {
		t.Fatalf("zero config (all defaults): %v", err)
	}
	bad := bridge.Config{
		Path: "nope", TopicPrefix: "a/+", ProtocolVersion: "3", PingInterval: 30 * time.Second,
		HandshakeTimeout: -1, MaxFrameSize: 10, MaxSubscriptions: -1, MaxQueueBytes: 10,
		AllowedOrigins: []string{"example.com"}, AuthKey: "short", TokenExpiry: -time.Second,
		LoginTimeout: -time.Second, MaxFailedLogins: -1,
		SubscribeRate: -1, SubscribeBurst: -1, InvokeRate: -2, InvokeBurst: -1,
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, key := range []string{"bridge.path", "bridge.topic_prefix", "bridge.protocol_version", "bridge.ping_interval",
		"bridge.handshake_timeout", "bridge.max_frame_size", "bridge.max_subscriptions", "bridge.max_queue_bytes",
		"bridge.allowed_origins", "bridge.auth_key", "bridge.token_expiry", "bridge.login_timeout", "bridge.max_failed_logins",
		"bridge.subscribe_rate", "bridge.subscribe_burst", "bridge.invoke_rate", "bridge.invoke_burst"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestConfigPaths(t *testing.T) {
	for in, want := range map[string][]string{
		"":                {"/socketcluster", "/socketcluster/"},
		"/socketcluster/": {"/socketcluster", "/socketcluster/"},
		"/sc":             {"/sc", "/sc/"},
	} {
		if got := (bridge.Config{Path: in}).Paths(); !reflect.DeepEqual(got, want) {
			t.Errorf("Paths(%q) = %v, want %v", in, got, want)
		}
	}
}
