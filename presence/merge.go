package presence

import "slices"

// Doc is a session of another cluster node with its JSON document (as
// mirrored in the cluster's presence store).
type Doc struct {
	Session Session
	JSON    []byte
}

// Merge returns a snapshot of the sessions of sn and of others (other
// nodes' sessions, in any order), ordered by connect time then id. A
// session of sn wins over a session of others with the same id (during a
// takeover the old node's document may linger a moment). sn is not
// modified; the result is not cached.
func Merge(sn *Snapshot, others []Doc) *Snapshot {
	if len(others) == 0 {
		return sn
	}
	local := make(map[string]struct{}, len(sn.Sessions))
	for _, s := range sn.Sessions {
		local[s.ID] = struct{}{}
	}
	n := len(sn.Sessions) + len(others)
	out := &Snapshot{Sessions: make([]Session, 0, n), Topics: make([]string, 0, n), docs: make([][]byte, 0, n)}
	add := func(s Session, topic string, doc []byte) {
		out.Sessions = append(out.Sessions, s)
		out.Topics = append(out.Topics, topic)
		out.docs = append(out.docs, doc)
	}
	rest := make([]Doc, 0, len(others))
	for _, d := range others {
		if _, dup := local[d.Session.ID]; !dup && len(d.JSON) > 0 {
			rest = append(rest, d)
		}
	}
	sortDocs(rest)
	i, j := 0, 0
	for i < len(sn.Sessions) || j < len(rest) {
		if j == len(rest) || (i < len(sn.Sessions) && before(&sn.Sessions[i], &rest[j].Session)) {
			add(sn.Sessions[i], sn.Topics[i], sn.docs[i])
			i++
			continue
		}
		add(rest[j].Session, ClientTopic(rest[j].Session.ID), rest[j].JSON)
		j++
	}
	size := 2
	for _, d := range out.docs {
		size += len(d) + 1
	}
	out.all = out.AppendJSON(make([]byte, 0, size), nil)
	return out
}

func before(a, b *Session) bool {
	if !a.ConnectedAt.Equal(b.ConnectedAt) {
		return a.ConnectedAt.Before(b.ConnectedAt)
	}
	return a.ID < b.ID
}

func sortDocs(ds []Doc) {
	slices.SortFunc(ds, func(x, y Doc) int {
		switch {
		case before(&x.Session, &y.Session):
			return -1
		case before(&y.Session, &x.Session):
			return 1
		}
		return 0
	})
}
