package auth

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needBins skips the test when a mosquitto binary is missing, unless the CI
// environment variable is set, in which case it fails: CI installs them.
func needBins(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found but CI is set: install mosquitto and mosquitto-clients", b)
			}
			t.Skipf("%s not found: install mosquitto and mosquitto-clients (apt-get install mosquitto mosquitto-clients) to run interop tests", b)
		}
	}
}

func run(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestInteropMosquittoPasswdFiles checks that files written by Debian's
// mosquitto_passwd are accepted by this package.
func TestInteropMosquittoPasswdFiles(t *testing.T) {
	needBins(t, "mosquitto_passwd")
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	// -c (interactive; mosquitto_passwd reads the two prompts from stdin).
	if out, err := run(t, "first pw\nfirst pw\n", "mosquitto_passwd", "-c", path, "alice"); err != nil {
		t.Fatalf("mosquitto_passwd -c: %v\n%s", err, out)
	}
	// -b adds users; -H sha512 writes the 1.x $6$ format.
	if out, err := run(t, "", "mosquitto_passwd", "-b", path, "bob", "bob:pw with spaces"); err != nil {
		t.Fatalf("mosquitto_passwd -b: %v\n%s", err, out)
	}
	if out, err := run(t, "", "mosquitto_passwd", "-H", "sha512", "-b", path, "carol", "c4rol"); err != nil {
		t.Fatalf("mosquitto_passwd -H sha512 -b: %v\n%s", err, out)
	}
	// -U upgrades a plain-text file.
	plain := filepath.Join(dir, "plain")
	writeFile(t, plain, "dave:d4ve\n")
	if out, err := run(t, "", "mosquitto_passwd", "-U", plain); err != nil {
		t.Fatalf("mosquitto_passwd -U: %v\n%s", err, out)
	}
	data, _ := os.ReadFile(plain)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	f.Close()
	content, _ := os.ReadFile(path)
	t.Logf("mosquitto_passwd wrote:\n%s", content)
	if !bytes.Contains(content, []byte("carol:$6$")) || !bytes.Contains(content, []byte("alice:$7$101$")) {
		t.Fatalf("unexpected formats:\n%s", content)
	}

	s, err := New(Config{PasswordFile: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for user, pw := range map[string]string{"alice": "first pw", "bob": "bob:pw with spaces", "carol": "c4rol", "dave": "d4ve"} {
		if got := s.Authenticate(user, []byte(pw), true, true); got != Allowed {
			t.Errorf("%s with right password: %v", user, got)
		}
		if got := s.Authenticate(user, []byte(pw+"x"), true, true); got != BadCredentials {
			t.Errorf("%s with wrong password: %v", user, got)
		}
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startMosquitto runs a mosquitto broker on a free port with the given
// password file and anonymous access off, and returns the port.
func startMosquitto(t *testing.T, passwordFile string) int {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "mosquitto.conf")
	cfg := fmt.Sprintf("listener %d 127.0.0.1\npassword_file %s\nallow_anonymous false\n", port, passwordFile)
	if os.Geteuid() == 0 {
		cfg += "user root\n" // otherwise mosquitto drops to user mosquitto and cannot read our 0600 file
	}
	writeFile(t, conf, cfg)
	var logBuf bytes.Buffer
	cmd := exec.Command("mosquitto", "-c", conf)
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", logBuf.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return port
		}
		select {
		case <-exited:
			t.Fatalf("mosquitto exited early:\n%s", logBuf.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not listening on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not a fixed wait
	}
}

func mosqPub(t *testing.T, port int, user, pw string) (string, error) {
	return run(t, "", "mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(port),
		"-u", user, "-P", pw, "-t", "interop/test", "-m", "hello", "-q", "1")
}

// TestInteropMosquittoBrokerAcceptsOurFiles checks that a real mosquitto
// broker accepts password files written by this package, in $7$ (default),
// $7$ with other iterations, and $6$.
func TestInteropMosquittoBrokerAcceptsOurFiles(t *testing.T) {
	needBins(t, "mosquitto", "mosquitto_pub")
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	var pf PasswordFile
	if _, err := pf.Set("alice", "s3cret", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := pf.Set("bob", "b0b pw", 2000); err != nil {
		t.Fatal(err)
	}
	pf.index["carol"] = len(pf.lines)
	pf.lines = append(pf.lines, pwLine{kind: lineHashed, user: "carol", secret: hashSHA512("c4rol")})
	pf.lines = append(pf.lines, pwLine{kind: lineOther, text: "# comment kept by sockmq"})
	if err := pf.Save(path); err != nil {
		t.Fatal(err)
	}
	port := startMosquitto(t, path)
	for user, pw := range map[string]string{"alice": "s3cret", "bob": "b0b pw", "carol": "c4rol"} {
		if out, err := mosqPub(t, port, user, pw); err != nil {
			t.Errorf("mosquitto refused %s with the right password: %v\n%s", user, err, out)
		}
		out, err := mosqPub(t, port, user, pw+"!")
		if err == nil {
			t.Errorf("mosquitto accepted %s with a wrong password", user)
		} else if !strings.Contains(out, "not authorised") {
			t.Errorf("wrong password for %s: unexpected output %q", user, out)
		}
	}
	if _, err := mosqPub(t, port, "nobody", "x"); err == nil {
		t.Error("mosquitto accepted an unknown user")
	}
}

// TestInteropUpgradedFile checks that a plain-text file upgraded by
// PasswordFile.Upgrade works in mosquitto, and one upgraded by
// mosquitto_passwd -U works here.
func TestInteropUpgradedFile(t *testing.T) {
	needBins(t, "mosquitto", "mosquitto_pub", "mosquitto_passwd")
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	writeFile(t, path, "# plain\nerin:3rin\n")
	pf, err := LoadPasswordFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := pf.Upgrade(0); err != nil || n != 1 {
		t.Fatalf("Upgrade = %d, %v", n, err)
	}
	if err := pf.Save(path); err != nil {
		t.Fatal(err)
	}
	port := startMosquitto(t, path)
	if out, err := mosqPub(t, port, "erin", "3rin"); err != nil {
		t.Errorf("mosquitto refused upgraded erin: %v\n%s", err, out)
	}
	if _, err := mosqPub(t, port, "erin", "nope"); err == nil {
		t.Error("mosquitto accepted a wrong password")
	}

	theirs := filepath.Join(dir, "theirs")
	writeFile(t, theirs, "frank:fr4nk\n")
	if out, err := run(t, "", "mosquitto_passwd", "-U", theirs); err != nil {
		t.Fatalf("mosquitto_passwd -U: %v\n%s", err, out)
	}
	s, err := New(Config{PasswordFile: theirs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Authenticate("frank", []byte("fr4nk"), true, true) != Allowed || s.Authenticate("frank", []byte("x"), true, true) != BadCredentials {
		t.Error("file upgraded by mosquitto_passwd -U not accepted")
	}
}
