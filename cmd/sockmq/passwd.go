package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/sockmq/sockmq/auth"
)

// Exit codes of "sockmq passwd".
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const passwdUsage = `Usage:
  sockmq passwd [-c | -D] [-I iterations] passwordfile username
  sockmq passwd [-c] -b [-I iterations] passwordfile username password
  sockmq passwd -U [-I iterations] passwordfile

Manage a mosquitto-compatible password file. New passwords are hashed as
$7$ (PBKDF2-SHA512, like mosquitto_passwd 2.x); the file works with both
sockmq and mosquitto. The file is replaced atomically; comments and blank
lines are kept. A new file gets mode 0600; a rewritten file keeps its
owner, group and mode, so a service reading it (mosquitto, a container's
user) still can. When they cannot be kept (only root may give a file to
another user) the command refuses and leaves the file unchanged.

  -c   create a new password file, overwriting any existing one
  -b   batch mode: take the password from the command line (it will be
       visible in the process list and shell history)
  -D   delete username from the file
  -U   hash every plain-text password in the file (sockmq refuses to load
       files with plain-text passwords)
  -I   PBKDF2 iterations for new hashes (default 101, as mosquitto_passwd)
  -h   show this help

Without -b the password is read twice: from the terminal without echo when
standard input is a terminal, otherwise as the first two lines of standard
input.

Exit status: 0 success, 1 error, 2 usage error.
`

// runPasswd implements "sockmq passwd". args excludes the subcommand name.
func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("sockmq passwd", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	create := flags.Bool("c", false, "")
	batch := flags.Bool("b", false, "")
	del := flags.Bool("D", false, "")
	upgrade := flags.Bool("U", false, "")
	iterations := flags.Int("I", auth.DefaultIterations, "")
	usage := func(msg string) int {
		if msg != "" {
			fmt.Fprintf(stderr, "sockmq passwd: %s\n\n", msg)
		}
		fmt.Fprint(stderr, passwdUsage)
		return exitUsage
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, passwdUsage)
			return exitOK
		}
		return usage(err.Error())
	}
	rest := flags.Args()
	if *iterations < 1 || *iterations > auth.MaxIterations {
		return usage(fmt.Sprintf("-I %d: want 1..%d", *iterations, auth.MaxIterations))
	}
	switch {
	case *upgrade:
		if *create || *del || *batch {
			return usage("-U cannot be combined with -c, -D or -b")
		}
		if len(rest) != 1 {
			return usage("-U takes exactly one argument: passwordfile")
		}
		return passwdUpgrade(rest[0], *iterations, stdout, stderr)
	case *create && *del:
		return usage("-c and -D cannot be combined")
	case *del:
		if *batch {
			return usage("-D cannot be combined with -b")
		}
		if len(rest) != 2 {
			return usage("-D needs passwordfile and username")
		}
		return passwdDelete(rest[0], rest[1], stdout, stderr)
	}
	want := 2
	if *batch {
		want = 3
	}
	if len(rest) != want {
		if *batch {
			return usage("-b needs passwordfile, username and password")
		}
		return usage("need passwordfile and username (use -b to give the password as an argument)")
	}
	path, user := rest[0], rest[1]
	if err := auth.ValidateUsername(user); err != nil {
		fmt.Fprintf(stderr, "sockmq passwd: invalid username %q: %v\n", user, err)
		return exitError
	}

	pf := &auth.PasswordFile{}
	existed := false
	if !*create {
		var code int
		if pf, code = loadForRewrite(path, stderr); pf == nil {
			return code
		}
	} else if _, err := os.Stat(path); err == nil {
		existed = true
	}

	var password string
	if *batch {
		password = rest[2]
	} else {
		var err error
		if password, err = readPassword(stdin, stderr); err != nil {
			fmt.Fprintf(stderr, "sockmq passwd: %v\n", err)
			return exitError
		}
	}
	added, err := pf.Set(user, password, *iterations)
	if err != nil {
		fmt.Fprintf(stderr, "sockmq passwd: %v\n", err)
		return exitError
	}
	if err := pf.Save(path); err != nil {
		fmt.Fprintf(stderr, "sockmq passwd: %v\n", err)
		return exitError
	}
	switch {
	case *create && existed:
		fmt.Fprintf(stdout, "replaced %s with a new file\n", path)
	case *create:
		fmt.Fprintf(stdout, "created %s\n", path)
	}
	if added {
		fmt.Fprintf(stdout, "added user %s to %s\n", user, path)
	} else {
		fmt.Fprintf(stdout, "updated password for %s in %s\n", user, path)
	}
	warnPlainText(pf, path, stderr)
	return exitOK
}

// loadForRewrite loads path, refusing files it cannot fully parse. On
// failure it returns nil and the exit code after reporting to stderr.
func loadForRewrite(path string, stderr io.Writer) (*auth.PasswordFile, int) {
	pf, err := auth.LoadPasswordFile(path)
	if err == nil {
		return pf, exitOK
	}
	var pe *auth.ParseError
	switch {
	case errors.As(err, &pe):
		for _, le := range pe.Lines {
			fmt.Fprintf(stderr, "%s: %v\n", path, le)
		}
		fmt.Fprintf(stderr, "sockmq passwd: refusing to rewrite %s: fix the %d malformed line(s) above first\n", path, len(pe.Lines))
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stderr, "sockmq passwd: %s does not exist (use -c to create it)\n", path)
	default:
		fmt.Fprintf(stderr, "sockmq passwd: %v\n", err)
	}
	return nil, exitError
}

func warnPlainText(pf *auth.PasswordFile, path string, stderr io.Writer) {
	users, lines := pf.PlainText()
	if len(users) == 0 {
		return
	}
	var where []string
	for _, l := range lines {
		where = append(where, fmt.Sprint(l))
	}
	fmt.Fprintf(stderr, "warning: %s has %d plain-text password(s) (line %s); sockmq will refuse to load it until you run: sockmq passwd -U %s\n",
		path, len(users), strings.Join(where, ", "), path)
}

func passwdDelete(path, user string, stdout, stderr io.Writer) int {
	pf, code := loadForRewrite(path, stderr)
	if pf == nil {
		return code
	}
	if !pf.Delete(user) {
		fmt.Fprintf(stderr, "sockmq passwd: user %s not found in %s; file unchanged\n", user, path)
		return exitError
	}
	if err := pf.Save(path); err != nil {
		fmt.Fprintf(stderr, "sockmq passwd: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "deleted user %s from %s\n", user, path)
	return exitOK
}

func passwdUpgrade(path string, iterations int, stdout, stderr io.Writer) int {
	pf, code := loadForRewrite(path, stderr)
	if pf == nil {
		return code
	}
	n, err := pf.Upgrade(iterations)
	if err != nil {
		fmt.Fprintf(stderr, "sockmq passwd: %v; file unchanged\n", err)
		return exitError
	}
	if n == 0 {
		fmt.Fprintf(stdout, "no plain-text passwords in %s; file unchanged\n", path)
		return exitOK
	}
	if err := pf.Save(path); err != nil {
		fmt.Fprintf(stderr, "sockmq passwd: %v\n", err)
		return exitError
	}
	noun := "passwords"
	if n == 1 {
		noun = "password"
	}
	fmt.Fprintf(stdout, "upgraded %d plain-text %s in %s\n", n, noun, path)
	return exitOK
}

// readPassword reads the password twice: without echo from a terminal, or
// as two lines of stdin otherwise.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		fmt.Fprint(stderr, "Password: ")
		p1, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(stderr, "Reenter password: ")
		p2, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return confirm(string(p1), string(p2))
	}
	r := bufio.NewReader(stdin)
	p1, err1 := readLine(r)
	p2, err2 := readLine(r)
	if err1 != nil || err2 != nil {
		return "", errors.New("standard input is not a terminal: expected the password on two lines")
	}
	return confirm(p1, p2)
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func confirm(p1, p2 string) (string, error) {
	if p1 != p2 {
		return "", errors.New("passwords do not match")
	}
	if p1 == "" {
		return "", auth.ErrEmptyPassword
	}
	return p1, nil
}
