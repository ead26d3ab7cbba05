package limit

import "time"

// Bucket is a token bucket: it holds up to Burst tokens and gains PerSecond
// tokens per second. The zero value refuses nothing (no limit). It is not
// safe for concurrent use.
type Bucket struct {
	rate   float64 // tokens per nanosecond; 0 = unlimited
	burst  float64
	tokens float64
	last   int64 // unix nanoseconds of the last refill
}

// NewBucket returns a full bucket that refills perSecond tokens per second
// up to burst. perSecond <= 0 means no limit. burst < 1 is raised to 1.
func NewBucket(perSecond float64, burst int) Bucket {
	if perSecond <= 0 {
		return Bucket{}
	}
	b := float64(max(burst, 1))
	return Bucket{rate: perSecond / float64(time.Second), burst: b, tokens: b}
}

// Unlimited reports whether the bucket refuses nothing.
func (b *Bucket) Unlimited() bool { return b.rate == 0 }

// Take removes n tokens if the bucket holds at least n and reports whether
// it did; otherwise it removes nothing. Taking from an unlimited bucket
// always succeeds.
func (b *Bucket) Take(n int, now time.Time) bool {
	if b.rate == 0 {
		return true
	}
	b.refill(now)
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// TakeUpTo removes up to n tokens and returns how many it removed (whole
// tokens only), so that a request carrying n items can be granted in part.
func (b *Bucket) TakeUpTo(n int, now time.Time) int {
	if b.rate == 0 {
		return n
	}
	b.refill(now)
	k := min(n, int(b.tokens))
	if k < 0 {
		k = 0
	}
	b.tokens -= float64(k)
	return k
}

func (b *Bucket) refill(now time.Time) {
	t := now.UnixNano()
	if b.last != 0 && t > b.last {
		b.tokens = min(b.burst, b.tokens+float64(t-b.last)*b.rate)
	}
	if t > b.last {
		b.last = t
	}
}
