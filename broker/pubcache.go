package broker

// pubCache encodes one message once for the sessions of one fan-out
// (route): the PUBLISH bytes differ between subscribers only by packet id
// (and by flags, version and subscription identifiers, which pick another
// template). A QoS 0 PUBLISH is shared as is by every connection it is
// queued on (queued bytes are never written to); a QoS 1/2 one is the
// template copied with the subscriber's packet id patched in, which spares
// the codec's work per delivery. It belongs to one goroutine.
type pubCache struct {
	m       *msg
	nowUnix int64
	n       int
	t       [4]pubTemplate
}

// pubTemplate is one encoding of the cached message.
type pubTemplate struct {
	key   uint8
	b     []byte
	pidAt int // offset of the packet id (QoS 1/2)
	err   error
}

// reset points the cache at m, encoded as of nowUnix (an MQTT 5 message
// expiry is sent as the time left).
func (pc *pubCache) reset(m *msg, nowUnix int64) {
	for i := range pc.n {
		pc.t[i] = pubTemplate{}
	}
	pc.m, pc.nowUnix, pc.n = m, nowUnix, 0
}

// encode returns the PUBLISH of m for one subscriber, as encodePublish
// does. With a nil cache, another message or subscription identifiers it
// just calls encodePublish.
func (pc *pubCache) encode(m *msg, version, qos byte, pid uint16, retain, dup bool, subIDs []uint32, nowUnix int64) ([]byte, error) {
	if pc == nil || pc.m != m || pc.nowUnix != nowUnix || len(subIDs) > 0 {
		return encodePublish(m, version, qos, pid, retain, dup, subIDs, nowUnix)
	}
	key := version<<4 | qos<<2
	if retain {
		key |= 1
	}
	if dup {
		key |= 2
	}
	var tp *pubTemplate
	for i := range pc.n {
		if pc.t[i].key == key {
			tp = &pc.t[i]
			break
		}
	}
	if tp == nil {
		if pc.n == len(pc.t) {
			return encodePublish(m, version, qos, pid, retain, dup, subIDs, nowUnix)
		}
		b, err := encodePublish(m, version, qos, pid, retain, dup, nil, nowUnix)
		pc.t[pc.n] = pubTemplate{key: key, b: b, err: err}
		tp = &pc.t[pc.n]
		pc.n++
		if err == nil && qos > 0 {
			_, _, hdr, ok, ferr := frameHeader(b)
			if !ok || ferr != nil || len(b) < hdr+2+len(m.topic)+2 {
				tp.err = errMalformed // cannot happen: the codec wrote it
			} else {
				tp.pidAt = hdr + 2 + len(m.topic)
			}
		}
	}
	if tp.err != nil || (qos > 0 && pid == 0) {
		return encodePublish(m, version, qos, pid, retain, dup, subIDs, nowUnix) // the codec's own error
	}
	if qos == 0 {
		return tp.b, nil
	}
	b := append([]byte(nil), tp.b...)
	b[tp.pidAt], b[tp.pidAt+1] = byte(pid>>8), byte(pid)
	return b, nil
}
