package poller

import "errors"

// ErrUnsupported is returned by New outside Linux: callers fall back to a
// goroutine per connection.
var ErrUnsupported = errors.New("poller: epoll is only available on Linux")
