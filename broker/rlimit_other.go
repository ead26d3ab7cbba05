//go:build !unix

package broker

// openFileLimit reports no open-file limit where the platform has none to
// read.
func openFileLimit() (uint64, bool) { return 0, false }
