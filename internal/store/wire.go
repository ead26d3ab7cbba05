package store

import "fmt"

// EncodeMessage encodes m (without its ID) in the store's record format,
// for carrying it to another node.
func EncodeMessage(m *Message) []byte {
	e := &enc{}
	m.encode(e)
	return e.b
}

// DecodeMessage decodes what EncodeMessage produced. The result's byte
// slices alias b.
func DecodeMessage(b []byte) (*Message, error) {
	d := &dec{b: b}
	m := &Message{}
	m.decode(d)
	if d.err != nil {
		return nil, fmt.Errorf("decode message: %w", d.err)
	}
	return m, nil
}
