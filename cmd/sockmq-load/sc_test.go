package main

import (
	"fmt"
	"strings"
	"testing"
)

// collect runs fastPublishes and returns whether it took the frame and
// the payloads it handed over (copied: they alias the frame).
func collect(frame string) (bool, []string) {
	var got []string
	ok := fastPublishes([]byte(frame), func(b []byte) { got = append(got, string(b)) })
	return ok, got
}

func TestFastPublishesTakesSinglesAndBatches(t *testing.T) {
	pub := func(ch, data string) string {
		return `{"event":"#publish","data":{"channel":"` + ch + `","data":"` + data + `"}}`
	}
	wild := `{"event":"#publish","data":{"channel":"a/+","data":{"topic":"a/b","data":"m9,0,3,xx"}}}`
	cases := []struct {
		frame string
		want  []string
	}{
		{pub("c", "m1,0,1,xx"), []string{"m1,0,1,xx"}},
		{"[" + pub("c", "m1,0,1,x") + "," + pub("c", "m2,0,2,x") + "," + pub("d", "m3,1,2,x") + "]",
			[]string{"m1,0,1,x", "m2,0,2,x", "m3,1,2,x"}},
		{wild, []string{"m9,0,3,xx"}},
		{"[" + wild + "," + pub("c", "m4,0,4,x") + "]", []string{"m9,0,3,xx", "m4,0,4,x"}},
	}
	for _, c := range cases {
		ok, got := collect(c.frame)
		if !ok || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: took=%v got %q, want %q", c.frame, ok, got, c.want)
		}
	}
	// A batch of more packets than the fast path keeps spans for falls
	// back whole, never half-handled.
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < 300; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(pub("c", fmt.Sprintf("m%d,0,%d,x", i, i)))
	}
	b.WriteString("]")
	if ok, got := collect(b.String()); ok || len(got) != 0 {
		t.Errorf("300-packet batch: took=%v with %d payloads, want the decoder's path", ok, len(got))
	}
}

func TestFastPublishesLeavesOtherFramesToTheDecoder(t *testing.T) {
	for _, frame := range []string{
		`{"rid":1,"data":{"id":"x"}}`,
		`[{"event":"#publish","data":{"channel":"c","data":"m1,0,1,x"}},{"rid":2}]`,
		`{"event":"#publish","data":{"channel":"c","data":{"n":1}}}`,
		`{"event":"#publish","data":{"channel":"c","data":"m1,\"q\",x"}}`,
		`{"event":"#publish","data":{"channel":"c","data":"hello"}}`,
		`{"event":"#kickOut","data":{"channel":"c"}}`,
		`[]`,
		``,
	} {
		if ok, got := collect(frame); ok || len(got) != 0 {
			t.Errorf("%s: took=%v got %q, want it left to the decoder", frame, ok, got)
		}
	}
}
