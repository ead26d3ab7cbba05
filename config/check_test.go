package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/testutil"
)

// What `sockmq check` reports must be what `sockmq serve` would refuse, in
// the user's words: the key path, the line, and what to write instead.
func TestCheckFindsWhatServeWouldRefuse(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"misspelt key", "listeners:\n  mqtt:\n    adress: 127.0.0.1:1883\n",
			[]string{"line 3: listeners.mqtt.adress: unknown key (did you mean address?)"}},
		{"key in the wrong section", "data_dir: /tmp/x\n",
			[]string{"line 1: data_dir: unknown key (did you mean persistence.data_dir?)"}},
		{"unknown key far from any", "limits:\n  frobnicate: 1\n",
			[]string{"line 2: limits.frobnicate: unknown key; the keys of limits are", "connect_timeout"}},
		{"duration as a number", "limits:\n  connect_timeout: 10\n",
			[]string{"line 2: limits.connect_timeout: 10 is not a duration; write 10s"}},
		{"duration as words", "bridge:\n  ping_interval: soon\n",
			[]string{"line 2: bridge.ping_interval: \"soon\" is not a duration", "10s"}},
		{"negative unsigned", "limits:\n  max_inflight: -1\n",
			[]string{"line 2: limits.max_inflight: -1 is not a whole number from 0 to 65535"}},
		{"too large", "limits:\n  max_packet_size: 99999999999\n",
			[]string{"limits.max_packet_size: 99999999999 is not a whole number from 0 to 4294967295"}},
		{"text for a number", "bridge:\n  max_subscriptions: many\n",
			[]string{"line 2: bridge.max_subscriptions: \"many\" is not a whole number"}},
		{"not a boolean", "persistence:\n  sync: sometimes\n",
			[]string{"line 2: persistence.sync: \"sometimes\" is not true or false"}},
		{"scalar for a list", "bridge:\n  allowed_origins: https://app.example.com\n",
			[]string{"line 2: bridge.allowed_origins: expected a list, e.g. [https://app.example.com]"}},
		{"scalar for a section", "listeners:\n  mqtt: 127.0.0.1:1883\n",
			[]string{"line 2: listeners.mqtt: expected the keys of a section", "address"}},
		{"key given twice", "logging:\n  level: info\n  level: debug\n",
			[]string{"line 3: logging.level: given twice (lines 2 and 3)"}},
		{"port out of range", "listeners:\n  mqtt: {address: '127.0.0.1:99999'}\n",
			[]string{"line 2: listeners.mqtt.address: port 99999 is not a number from 0 to 65535"}},
		{"port not a number", "listeners:\n  mqtt: {address: '127.0.0.1:abc'}\n",
			[]string{"listeners.mqtt.address: port \"abc\" is not a number from 0 to 65535"}},
		{"negative port", "listeners:\n  mqtt: {address: '127.0.0.1:-1'}\n",
			[]string{"listeners.mqtt.address: port \"-1\" is not a number from 0 to 65535"}},
		{"port glued to text", "listeners:\n  http: {address: '127.0.0.1:8080x'}\n",
			[]string{"listeners.http.address: port \"8080x\" is not a number from 0 to 65535"}},
		{"port without host", "listeners:\n  mqtt: {address: '1883'}\n",
			[]string{"listeners.mqtt.address: \"1883\" is not host:port", "127.0.0.1:1883"}},
		{"bad host", "listeners:\n  mqtt: {address: 'my host:1883'}\n",
			[]string{"listeners.mqtt.address: host \"my host\" is not an IP address or a host name"}},
		{"same address twice", "listeners:\n  mqtt: {address: '127.0.0.1:1883'}\n  http: {address: '127.0.0.1:1883'}\n",
			[]string{"line 3: listeners.http.address: 127.0.0.1:1883 overlaps listeners.mqtt.address (127.0.0.1:1883)"}},
		{"wildcard overlaps loopback", "listeners:\n  mqtt: {address: '0.0.0.0:1883'}\n  http: {address: '127.0.0.1:1883'}\nauth: {allow_anonymous: true}\n",
			[]string{"listeners.http.address: 127.0.0.1:1883 overlaps listeners.mqtt.address (0.0.0.0:1883)"}},
		{"empty host overlaps", "listeners:\n  mqtt: {address: ':8080'}\nauth: {allow_anonymous: true}\n",
			[]string{"listeners.http.address: 127.0.0.1:8080 overlaps listeners.mqtt.address (:8080)"}},
		{"bad certificate", "listeners:\n  mqtt_tls: {address: '127.0.0.1:8883', cert_file: CERT, key_file: CERT}\n",
			[]string{"listeners.mqtt_tls: cannot load cert_file and key_file"}},
		{"yaml syntax", "listeners:\n  mqtt: {address: [\n",
			[]string{"line ", "not valid YAML"}},
		{"typo inside a merged mapping", "listeners:\n  http:\n    <<: {adress: x}\n",
			[]string{"line 3: listeners.http.adress: unknown key (did you mean address?)"}},
		{"two documents", "logging: {level: info}\n---\nlogging: {level: debug}\n",
			[]string{"line 2: a second YAML document"}},
		{"not a mapping", "just text\n", []string{"line 1: expected the keys of a section (listeners, limits"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bogus := filepath.Join(t.TempDir(), "bogus.pem")
			if err := os.WriteFile(bogus, []byte("not a certificate"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := config.Parse([]byte(strings.ReplaceAll(c.yaml, "CERT", bogus)))
			if err == nil {
				t.Fatal("accepted; serve would refuse it")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%s", w, err)
				}
			}
			noGoTypes(t, err)
		})
	}
}

// noGoTypes fails when a message speaks Go instead of YAML.
func noGoTypes(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{"broker.", "bridge.Config", "time.Duration", "!!", "unmarshal", "struct", "uint", "int64"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("message names Go internals (%q):\n%s", s, err)
		}
	}
}

// Listeners that can share the machine are accepted.
func TestListenersThatDoNotOverlap(t *testing.T) {
	for _, y := range []string{
		"listeners:\n  mqtt: {address: '127.0.0.1:0'}\n  http: {address: '127.0.0.1:0'}\n",
		"listeners:\n  mqtt: {address: '127.0.0.1:1883'}\n  http: {address: '127.0.0.2:1883'}\n",
		"listeners:\n  mqtt: {address: 'localhost:1883'}\n  http: {address: 'localhost:8080'}\n",
		"listeners:\n  mqtt: {address: '[::1]:1883'}\n  http: {address: '127.0.0.1:1883'}\n",
		"listeners:\n  mqtt: {address: '127.0.0.1:65535'}\n",
		// anchors, aliases and merge keys are YAML and work as YAML says
		"listeners:\n  mqtt: &a {address: '127.0.0.1:0'}\n  http:\n    <<: *a\n    mqtt_path: /ws\n",
		"",
		"# only a comment\n",
	} {
		if _, err := config.Parse([]byte(y)); err != nil {
			t.Errorf("%s: %v", y, err)
		}
	}
}

// Every problem of a file is reported at once: parse-stage problems (keys,
// types) do not hide the checks of the values, and each names its line.
func TestCheckReportsEveryProblemAtOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sockmq.yaml")
	y := `listeners:
  mqtt:
    adress: 127.0.0.1:1883
  http:
    address: 127.0.0.1:99999
limits:
  connect_timeout: 10
  max_connections: -3
logging:
  level: loud
auth:
  password_file: /nonexistent/passwd
`
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		path + ":3: listeners.mqtt.adress: unknown key (did you mean address?)",
		path + ":5: listeners.http.address: port 99999 is not a number from 0 to 65535",
		path + ":7: limits.connect_timeout: 10 is not a duration; write 10s",
		path + ":8: limits.max_connections: -3 must be >= 0",
		path + ":10: logging.level: \"loud\" must be debug, info, warn or error",
		path + ":12: auth.password_file:",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d: want a line starting with %q in:\n%s", i+1, w, err)
		}
	}
	var ce *config.Error
	if !asConfigError(err, &ce) || len(ce.Problems) != len(want) || ce.Problems[0].Key != "listeners.mqtt.adress" || ce.Problems[0].Line != 3 {
		t.Errorf("error is not a *config.Error with the problems: %#v", err)
	}
	noGoTypes(t, err)
}

func asConfigError(err error, target **config.Error) bool {
	ce, ok := err.(*config.Error)
	if ok {
		*target = ce
	}
	return ok
}

// Relative paths in a configuration file are relative to the file's
// directory, not to wherever sockmq was started from.
func TestLoadResolvesPathsAgainstTheFile(t *testing.T) {
	dir := t.TempDir()
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(filepath.Join(etc, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	cert, key := testutil.SelfSignedCert(t, filepath.Join(etc, "tls"))
	for name, data := range map[string]string{"passwd": "", "acl": "topic read x\n"} {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(etc, "sockmq.yaml")
	y := `listeners:
  mqtt_tls: {address: '127.0.0.1:0', cert_file: tls/` + filepath.Base(cert) + `, key_file: ./tls/` + filepath.Base(key) + `}
  http: {address: '127.0.0.1:0', cert_file: ` + cert + `, key_file: tls/` + filepath.Base(key) + `}
persistence: {data_dir: ../var/data}
auth: {password_file: passwd, acl_file: ./acl}
`
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)
	f, err := config.Load(path)
	if err != nil {
		t.Fatalf("config with paths relative to its directory, loaded from another directory: %v", err)
	}
	for _, c := range []struct{ key, got, want string }{
		{"listeners.mqtt_tls.cert_file", f.Listeners.MQTTTLS.CertFile, cert},
		{"listeners.mqtt_tls.key_file", f.Listeners.MQTTTLS.KeyFile, key},
		{"listeners.http.cert_file", f.Listeners.HTTP.CertFile, cert},
		{"listeners.http.key_file", f.Listeners.HTTP.KeyFile, key},
		{"persistence.data_dir", f.Persistence.DataDir, filepath.Join(dir, "var", "data")},
		{"auth.password_file", f.Auth.PasswordFile, filepath.Join(etc, "passwd")},
		{"auth.acl_file", f.Auth.ACLFile, filepath.Join(etc, "acl")},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.key, c.got, c.want)
		}
	}

	// The default data_dir (./data) of a file that does not set it is
	// beside the file too.
	other := filepath.Join(etc, "minimal.yaml")
	if err := os.WriteFile(other, []byte("logging: {level: debug}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := config.Load(other); err != nil || f.Persistence.DataDir != filepath.Join(etc, "data") {
		t.Errorf("default data_dir of %s = %q (%v), want %s", other, f.Persistence.DataDir, err, filepath.Join(etc, "data"))
	}
	// A missing relative file is reported with the path that was tried.
	bad := filepath.Join(etc, "bad.yaml")
	if err := os.WriteFile(bad, []byte("auth: {password_file: nothere}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(bad); err == nil || !strings.Contains(err.Error(), filepath.Join(etc, "nothere")) {
		t.Errorf("missing relative password file: %v, want the resolved path %s", err, filepath.Join(etc, "nothere"))
	}
}
