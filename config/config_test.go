package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/testutil"
)

// The documented example at the repository root must parse, contain every
// key, and equal the embedded defaults (it documents them).
func TestDocumentedExampleParsesAndMatchesDefaults(t *testing.T) {
	if _, err := config.Load(filepath.Join("..", "config.yaml")); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	// Parse, unlike Load, leaves ./data relative, as the defaults have it.
	data, _ := os.ReadFile(filepath.Join("..", "config.yaml"))
	f, err := config.Parse(data)
	if err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	if !reflect.DeepEqual(f, config.Default()) {
		t.Fatalf("config.yaml differs from the embedded defaults:\nfile:     %+v\ndefaults: %+v", f, config.Default())
	}
	for _, key := range []string{
		"listeners:", "mqtt:", "mqtt_tls:", "http:", "address:", "cert_file:", "key_file:", "mqtt_path:",
		"limits:", "max_connections:", "max_packet_size:", "connect_timeout:", "max_queued_messages:", "max_subscriptions:", "max_inflight:",
		"keepalive_min:", "keepalive_max:", "max_message_expiry:", "max_session_expiry:", "throttle_queued:",
		"persistence:", "enabled:", "data_dir:", "sync:", "logging:", "level:", "format:",
		"auth:", "password_file:", "acl_file:", "allow_anonymous:", "bridge:", "lwt:", "max_delay:",
		"path:", "topic_prefix:", "protocol_version:", "ping_interval:", "ping_timeout:", "handshake_timeout:",
		"max_frame_size:", "max_subscriptions:", "max_queue_bytes:", "write_timeout:", "allowed_origins:", "auth_key:", "token_expiry:",
	} {
		if !strings.Contains(string(data), key) {
			t.Errorf("config.yaml does not document %s", key)
		}
	}
}

func TestEveryKeyParses(t *testing.T) {
	cert, key := testutil.SelfSignedCert(t, t.TempDir())
	f, err := config.Parse([]byte(`
listeners:
  mqtt: {address: "127.0.0.1:1884"}
  mqtt_tls: {address: "127.0.0.1:8884", cert_file: ` + cert + `, key_file: ` + key + `}
  http: {address: "127.0.0.1:8081", cert_file: ` + cert + `, key_file: ` + key + `, mqtt_path: /ws}
limits:
  max_connections: 5
  max_packet_size: 2048
  connect_timeout: 3s
  max_queued_messages: 7
  max_inflight: 9
  keepalive_min: 5s
  keepalive_max: 60s
  max_message_expiry: 1h
  max_session_expiry: 24h
persistence: {enabled: false, data_dir: /tmp/x, sync: false}
logging: {level: debug, format: json}
auth: {password_file: "", acl_file: "", allow_anonymous: true}
bridge:
  enabled: false
  path: /sc
  topic_prefix: "sc/"
  protocol_version: 1
  ping_interval: 2s
  ping_timeout: 9s
  handshake_timeout: 3s
  max_frame_size: 4096
  max_subscriptions: 7
  max_queue_bytes: 65536
  write_timeout: 4s
  allowed_origins: [https://app.example.com]
  auth_key: 0123456789abcdef0123
  token_expiry: 1h
lwt: {max_delay: 10m}
`))
	if err != nil {
		t.Fatal(err)
	}
	l := f.Limits
	if f.Listeners.MQTT.Address != "127.0.0.1:1884" || f.Listeners.MQTTTLS.CertFile != cert || f.Listeners.HTTP.MQTTPath != "/ws" ||
		l.MaxConnections != 5 || l.MaxPacketSize != 2048 || l.ConnectTimeout != 3*time.Second || l.MaxQueuedMessages != 7 ||
		l.MaxInflight != 9 || l.KeepaliveMin != 5*time.Second || l.KeepaliveMax != time.Minute || l.MaxMessageExpiry != time.Hour ||
		l.MaxSessionExpiry != 24*time.Hour || f.Persistence.Enabled || f.Persistence.Sync || f.Logging.Format != "json" ||
		f.Auth.AllowAnonymous == nil || !*f.Auth.AllowAnonymous {
		t.Fatalf("parsed values wrong: %+v", f)
	}
	br := f.Bridge
	if br.Enabled || br.Path != "/sc" || br.TopicPrefix != "sc/" || br.ProtocolVersion != "1" || br.PingInterval != 2*time.Second ||
		br.PingTimeout != 9*time.Second || br.HandshakeTimeout != 3*time.Second || br.MaxFrameSize != 4096 || br.MaxSubscriptions != 7 ||
		br.MaxQueueBytes != 65536 || br.WriteTimeout != 4*time.Second || len(br.AllowedOrigins) != 1 || br.AuthKey != "0123456789abcdef0123" ||
		br.TokenExpiry != time.Hour {
		t.Fatalf("bridge values wrong: %+v", br)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"typo", "limits:\n  max_conections: 5\n", []string{"limits.max_conections: unknown key (did you mean max_connections?)"}},
		{"unknown section", "listner: {}\n", []string{"listner"}},
		{"bad address", "listeners:\n  mqtt: {address: nonsense}\n", []string{"listeners.mqtt.address:", "nonsense"}},
		{"missing cert", "listeners:\n  mqtt_tls: {address: '127.0.0.1:8883', cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}\n",
			[]string{"listeners.mqtt_tls.cert_file:", "listeners.mqtt_tls.key_file:", "no such file"}},
		{"tls without cert", "listeners:\n  mqtt_tls: {address: '127.0.0.1:8883'}\n", []string{"listeners.mqtt_tls.cert_file: required"}},
		{"bad duration", "limits:\n  connect_timeout: soon\n", []string{"soon"}},
		{"bad level", "logging: {level: loud}\n", []string{"logging.level:"}},
		{"missing password file", "auth: {password_file: /nonexistent/pw}\n", []string{"auth.password_file:"}},
		{"anonymous on the network", "listeners:\n  mqtt: {address: '0.0.0.0:1883'}\n", []string{"line 2: listeners.mqtt.address: 0.0.0.0:1883 is not loopback", "auth.password_file", "allow_anonymous"}},
		{"bridge values", "bridge: {protocol_version: 3, ping_interval: 30s, ping_timeout: 10s, max_queue_bytes: -1, auth_key: short}\n",
			[]string{"bridge.protocol_version:", "bridge.ping_interval:", "bridge.max_queue_bytes:", "bridge.auth_key:"}},
		{"bridge path collides", "bridge: {path: /mqtt}\n", []string{"bridge.path:", "/mqtt"}},
		{"several at once", "listeners:\n  mqtt: {address: x}\nlimits: {max_packet_size: 300000000}\nlogging: {format: xml}\n",
			[]string{"listeners.mqtt.address:", "limits.max_packet_size:", "logging.format:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(c.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNetworkBindWithExplicitAnonymousIsAccepted(t *testing.T) {
	if _, err := config.Parse([]byte("listeners:\n  mqtt: {address: '0.0.0.0:1883'}\nauth: {allow_anonymous: true}\n")); err != nil {
		t.Fatal(err)
	}
}

// The container example binds 0.0.0.0 and must require passwords.
func TestContainerExampleRequiresPasswords(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "container.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(pw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	acl, err := filepath.Abs(filepath.Join("..", "deploy", "acl")) // the image's own ACL
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse([]byte(strings.NewReplacer("/etc/sockmq/passwd", pw, "/etc/sockmq/acl", acl).Replace(string(data))))
	if err != nil {
		t.Fatalf("container.yaml with its password file present: %v", err)
	}
	if f.Auth.AllowAnonymous == nil || *f.Auth.AllowAnonymous || f.Auth.PasswordFile != pw || f.Listeners.MQTT.Address != "0.0.0.0:1883" {
		t.Fatalf("container.yaml must bind 0.0.0.0 and refuse anonymous clients: %+v", f)
	}
	if _, err := config.Parse(data); err == nil || !strings.Contains(err.Error(), "auth.password_file") {
		t.Fatalf("container.yaml without its password file mounted: %v, want an auth.password_file error", err)
	}
}
