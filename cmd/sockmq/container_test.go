//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/internal/testutil"
)

// image is what the Dockerfile puts in the image, as the container sees it.
type image struct {
	uid, gid int
	config   string            // the path CMD passes to serve -c
	copies   map[string]string // image path -> repository file (COPY deploy/...)
	owned    map[string][2]int // image directory -> owner (COPY --chown)
}

// readDockerfile extracts from ../../Dockerfile the user the image runs
// as, the files it copies from the repository, the directories it hands to
// that user and the configuration CMD reads.
func readDockerfile(t *testing.T) image {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	img := image{uid: -1, copies: map[string]string{}, owned: map[string][2]int{}}
	user := regexp.MustCompile(`^USER (\d+):(\d+)$`)
	copyDeploy := regexp.MustCompile(`^COPY (deploy/\S+) (/\S+)$`)
	copyOwned := regexp.MustCompile(`^COPY --from=\S+ --chown=(\d+):(\d+) \S+ (/\S+)$`)
	cmd := regexp.MustCompile(`^CMD \["serve", "-c", "(\S+)"\]$`)
	stage := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "FROM ") {
			stage++
		}
		if stage < 2 { // the build stage does not reach the image
			continue
		}
		if m := user.FindStringSubmatch(line); m != nil {
			img.uid, _ = strconv.Atoi(m[1])
			img.gid, _ = strconv.Atoi(m[2])
		}
		if m := copyDeploy.FindStringSubmatch(line); m != nil {
			img.copies[m[2]] = filepath.Join("..", "..", m[1])
		}
		if m := copyOwned.FindStringSubmatch(line); m != nil {
			u, _ := strconv.Atoi(m[1])
			g, _ := strconv.Atoi(m[2])
			img.owned[m[3]] = [2]int{u, g}
		}
		if m := cmd.FindStringSubmatch(line); m != nil {
			img.config = m[1]
		}
	}
	if img.uid <= 0 || img.config == "" || img.copies[img.config] == "" {
		t.Fatalf("Dockerfile: cannot find the non-root USER, the CMD's config or its COPY: %+v", img)
	}
	return img
}

// containerRoot lays out the image's files under a new directory: each
// image path p becomes root+p, with the owner and mode the image gives it.
// It returns root and the configuration rewritten to use root's paths and
// free loopback ports.
func (img image) containerRoot(t *testing.T) (root, configPath, mqttAddr, httpAddr string) {
	t.Helper()
	root = sharedDir(t, 0o755)
	for dst, src := range img.copies {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(src)
		p := filepath.Join(root, dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	for dir, owner := range img.owned {
		p := filepath.Join(root, dir)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, owner[0], owner[1]); err != nil {
			t.Fatal(err)
		}
	}
	mqttAddr, httpAddr = freePort(t), freePort(t)
	configPath = filepath.Join(root, img.config)
	data, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		"/etc/sockmq/", root+"/etc/sockmq/",
		"/var/lib/sockmq", root+"/var/lib/sockmq",
		"0.0.0.0:1883", mqttAddr,
		"0.0.0.0:8080", httpAddr,
	).Replace(string(data))
	if err := os.WriteFile(configPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, configPath, mqttAddr, httpAddr
}

// mount puts the host file src at the image path dst, as `docker run -v
// src:dst` does: the same file (a hard link), with its owner and mode.
func mount(t *testing.T, root, src, dst string) {
	t.Helper()
	p := filepath.Join(root, dst)
	_ = os.Remove(p)
	if err := os.Link(src, p); err != nil {
		t.Fatal(err)
	}
}

// serveAs runs serve -c config as the image's user and waits until it
// answers /healthz or exits. It returns the process output and whether it
// is serving.
func serveAs(t *testing.T, img image, bin, config, httpAddr string) (out *bytes.Buffer, serving bool) {
	t.Helper()
	cmd := asUser(t, img.uid, img.gid, bin, "serve", "-c", config)
	out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return out, false
		default:
		}
		if resp, err := http.Get("http://" + httpAddr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return out, true
			}
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	t.Fatalf("sockmq neither served nor exited within 20s:\n%s", out)
	return nil, false
}

// newPasswd runs the README's `sockmq passwd -c ./passwd alice` in dir
// (as root, answering the two password prompts) and returns the file.
func newPasswd(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "passwd")
	var out, errb bytes.Buffer
	if code := run([]string{"passwd", "-c", path, "alice"}, strings.NewReader("s3cret\ns3cret\n"), &out, &errb); code != 0 {
		t.Fatalf("sockmq passwd: exit %d: %s", code, errb.String())
	}
	return path
}

func connectAlice(t *testing.T, addr string) *testutil.Client5 {
	t.Helper()
	c, ca, err := testutil.Connect5(t, testutil.Dial(t, addr), &paho.Connect{
		ClientID: "alice-1", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("s3cret"), PasswordFlag: true,
	})
	if err != nil {
		t.Fatalf("alice cannot connect (connack %+v): %v", ca, err)
	}
	return c
}

// The README's container commands work as written, seen from the image's
// user: the password file written by `sockmq passwd` and handed to uid
// 65532 is readable, a mounted ACL is applied, and without a mount the
// image's own ACL lets users in. CI runs as root; this test fails rather
// than skips when it cannot switch to the image's uid.
func TestContainerImageReadsTheDocumentedFiles(t *testing.T) {
	img := readDockerfile(t)
	bin := sharedBinary(t)
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	chown := fmt.Sprintf("chown %d:%d passwd", img.uid, img.gid)
	if !strings.Contains(string(readme), chown) {
		t.Fatalf("README.md does not tell the user to run %q before docker run", chown)
	}

	t.Run("password file handed to the image user, ACL mounted", func(t *testing.T) {
		host := sharedDir(t, 0o755)
		pw := newPasswd(t, host)
		if err := os.Chown(pw, img.uid, img.gid); err != nil { // sudo chown 65532:65532 passwd
			t.Fatal(err)
		}
		acl := filepath.Join(host, "acl")
		if err := os.WriteFile(acl, []byte("user alice\ntopic readwrite alice/#\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(acl, img.uid, img.gid); err != nil {
			t.Fatal(err)
		}
		root, cfg, mqttAddr, httpAddr := img.containerRoot(t)
		mount(t, root, pw, "/etc/sockmq/passwd")
		mount(t, root, acl, "/etc/sockmq/acl")
		out, serving := serveAs(t, img, bin, cfg, httpAddr)
		if !serving {
			t.Fatalf("sockmq as uid %d did not start:\n%s", img.uid, out)
		}
		c := connectAlice(t, mqttAddr)
		if r := c.Sub(t, "alice/x", 1); r[0] != 1 {
			t.Errorf("alice/x: SUBACK %#x, want 1 (granted by the mounted ACL)", r[0])
		}
		if r := c.Sub(t, "other/x", 1); r[0] != 0x87 {
			t.Errorf("other/x: SUBACK %#x, want 0x87: the mounted ACL is not applied", r[0])
		}
		// `sudo sockmq passwd passwd bob` later keeps the file readable.
		if code := run([]string{"passwd", "-b", pw, "bob", "b0b"}, nil, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
			t.Fatal("adding bob failed")
		}
		if u, _, _ := owner(t, pw); u != img.uid {
			t.Errorf("after adding a user the password file belongs to %d, not the image's %d", u, img.uid)
		}
	})

	t.Run("no ACL mounted: the image's own ACL", func(t *testing.T) {
		host := sharedDir(t, 0o755)
		pw := newPasswd(t, host)
		if err := os.Chown(pw, img.uid, img.gid); err != nil {
			t.Fatal(err)
		}
		root, cfg, mqttAddr, httpAddr := img.containerRoot(t)
		mount(t, root, pw, "/etc/sockmq/passwd")
		out, serving := serveAs(t, img, bin, cfg, httpAddr)
		if !serving {
			t.Fatalf("sockmq as uid %d did not start:\n%s", img.uid, out)
		}
		c := connectAlice(t, mqttAddr)
		if r := c.Sub(t, "other/x", 1); r[0] != 1 {
			t.Errorf("other/x: SUBACK %#x, want 1 (the shipped ACL grants every topic)", r[0])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Publish(ctx, &paho.Publish{Topic: "other/x", QoS: 1, Payload: []byte("hi")}); err != nil {
			t.Errorf("publish: %v", err)
		}
	})

	// Skipping the chown is what the README warns about: the image's user
	// cannot read a 0600 file of root's, and serve says so and exits.
	t.Run("password file not handed over", func(t *testing.T) {
		host := sharedDir(t, 0o755)
		pw := newPasswd(t, host)
		root, cfg, _, httpAddr := img.containerRoot(t)
		mount(t, root, pw, "/etc/sockmq/passwd")
		out, serving := serveAs(t, img, bin, cfg, httpAddr)
		if serving || !strings.Contains(out.String(), "auth.password_file") || !strings.Contains(out.String(), "permission denied") {
			t.Fatalf("serving=%v; want a refusal naming auth.password_file and the permission:\n%s", serving, out)
		}
	})
}
