package auth

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzParsePasswordFile(f *testing.F) {
	f.Add([]byte("alice:" + mosq7 + "\nbob:" + mosq6 + "\n# c\n\nplain:pw\n"))
	f.Add([]byte("x:$7$1$AAAA$AAAA\n:\n::\nu:$2a$04$abc\n$6$:$6$\n"))
	f.Add([]byte("a:b\na:c\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pf, err := ParsePasswordFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		// Whatever parses must round-trip through WriteTo unchanged in meaning.
		var b bytes.Buffer
		pf.WriteTo(&b)
		pf2, err := ParsePasswordFile(&b)
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v\n%q", err, b.String())
		}
		if strings.Join(pf.Users(), "\n") != strings.Join(pf2.Users(), "\n") {
			t.Fatal("users changed on round trip")
		}
	})
}

func FuzzParseACL(f *testing.F) {
	f.Add([]byte(testACL))
	f.Add([]byte("topic\nuser\npattern deny %u/%c/#\ntopic read $share/a/#\n"))
	f.Add([]byte("pattern read %\ntopic write +/+/#\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseACL(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, id := range []Identity{
			{Username: "u", ClientID: "c"},
			{ClientID: "c", Anonymous: true},
			{Username: "a/+", ClientID: "#"},
		} {
			for _, tp := range []string{"a", "a/b", "$SYS/x", "u/c", "/"} {
				a.Allowed(id, tp, Read)
				a.Allowed(id, tp, Write)
			}
			for _, f := range []string{"#", "+/+", "a/#", "$share/g/#", "$SYS/#"} {
				a.Subscription(id, f)
			}
		}
	})
}
