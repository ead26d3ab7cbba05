package poller

import "io"

var ioEOF = io.EOF
