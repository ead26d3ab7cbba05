//go:build unix

package broker

import "syscall"

// openFileLimit returns the process's open-file limit (RLIMIT_NOFILE, the
// soft limit that the Go runtime has raised to the hard one at start).
func openFileLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return rl.Cur, true
}
