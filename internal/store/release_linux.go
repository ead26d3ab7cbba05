package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMemory drops the pages of the store's memory map from the
// process's resident memory. bbolt reads the file through a read-only
// shared mapping, so every page a transaction touched stays resident
// until the kernel needs the memory; the data stays in the page cache and
// a later read faults it back in. It runs inside a read transaction, which
// keeps bbolt from remapping meanwhile. It returns how many bytes of
// mapping it released.
func (s *Store) ReleaseMemory() (int64, error) {
	fi, err := os.Stat(s.db.Path())
	if err != nil {
		return 0, fmt.Errorf("release store memory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, nil
	}
	var released int64
	err = s.db.View(func(*bolt.Tx) error {
		ranges, err := fileMappings(uint64(st.Dev), st.Ino)
		if err != nil {
			return err
		}
		for _, r := range ranges {
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED); e != 0 {
				return fmt.Errorf("madvise: %w", e)
			}
			released += int64(r[1] - r[0])
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("release store memory: %w", err)
	}
	return released, nil
}

// fileMappings returns the address ranges [start, end) of this process's
// mappings of the file with device dev and inode ino.
func fileMappings(dev, ino uint64) ([][2]uintptr, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]uintptr
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// start-end perms offset major:minor inode [path]
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 5 {
			continue
		}
		if n, err := strconv.ParseUint(string(fields[4]), 10, 64); err != nil || n != ino {
			continue
		}
		maj, mnr, ok := bytes.Cut(fields[3], []byte{':'})
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(string(maj), 16, 32)
		mi, err2 := strconv.ParseUint(string(mnr), 16, 32)
		if err1 != nil || err2 != nil || unix.Mkdev(uint32(ma), uint32(mi)) != dev {
			continue
		}
		lo, hi, ok := bytes.Cut(fields[0], []byte{'-'})
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}
