package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
)

// maxCacheEntries bounds the verified-credential cache.
const maxCacheEntries = 10_000

// credCache remembers credentials that passed slow verification, as
// HMAC-SHA256 digests under a per-process random key over (user, password,
// hash string). A changed hash therefore misses, and the cache never holds a
// password. Each snapshot has its own cache, so a reload empties it.
type credCache struct {
	key []byte
	mu  sync.Mutex
	m   map[[sha256.Size]byte]struct{}
}

func newCredCache(key []byte) *credCache {
	return &credCache{key: key, m: make(map[[sha256.Size]byte]struct{})}
}

func (c *credCache) digest(user string, password []byte, hashStr string) [sha256.Size]byte {
	mac := hmac.New(sha256.New, c.key)
	writeField(mac, []byte(user))
	writeField(mac, password)
	writeField(mac, []byte(hashStr))
	var d [sha256.Size]byte
	mac.Sum(d[:0])
	return d
}

// writeField writes b with a length prefix so fields cannot run together.
func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

func (c *credCache) has(d [sha256.Size]byte) bool {
	c.mu.Lock()
	_, ok := c.m[d]
	c.mu.Unlock()
	return ok
}

func (c *credCache) add(d [sha256.Size]byte) {
	c.mu.Lock()
	if len(c.m) >= maxCacheEntries {
		for k := range c.m { // evict an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[d] = struct{}{}
	c.mu.Unlock()
}

func (c *credCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
