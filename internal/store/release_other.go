//go:build !linux

package store

// ReleaseMemory does nothing on this platform (the store's memory map is
// left to the operating system); it reports 0 bytes released.
func (s *Store) ReleaseMemory() (int64, error) { return 0, nil }
