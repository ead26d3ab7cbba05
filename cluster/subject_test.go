package cluster

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

func TestSubjectRoundTrip(t *testing.T) {
	for _, topic := range []string{"a", "a/b/c", "/", "a//b", "/a/", "$SYS/x", "dots.in.level/*/>", "100%", "sp ace/tab\t", "ünï/çødé", "%"} {
		s, err := topicSubject("c1", classCore, topic)
		if err != nil {
			t.Fatal(err)
		}
		if !server.IsValidPublishSubject(s) {
			t.Errorf("%q -> %q is not a valid publish subject", topic, s)
		}
		back, err := subjectTopic(s)
		if err != nil || back != topic {
			t.Errorf("%q -> %q -> %q, %v", topic, s, back, err)
		}
		k, err := retainedKey(topic)
		if err != nil {
			t.Fatal(err)
		}
		if kt, err := keyTopic(k); err != nil || kt != topic {
			t.Errorf("key %q -> %q, %v", k, kt, err)
		}
	}
}

// Filters map onto subjects so that NATS matches exactly what MQTT
// matches, '$' topics included.
func TestFilterSubjectsMatchLikeMQTT(t *testing.T) {
	cases := []struct {
		filter string
		topics map[string]bool
	}{
		{"#", map[string]bool{"a": true, "a/b": true, "/": true, "$SYS/x": false}},
		{"+/b", map[string]bool{"a/b": true, "/b": true, "a/c": false, "$x/b": false}},
		{"a/#", map[string]bool{"a": true, "a/b/c": true, "a/": true, "b": false}},
		{"$SYS/#", map[string]bool{"$SYS": true, "$SYS/a": true, "SYS/a": false}},
		{"a.b/+", map[string]bool{"a.b/c": true, "a/b/c": false}},
		{"a//+", map[string]bool{"a//x": true, "a/x": false}},
	}
	for _, tc := range cases {
		subs, err := filterSubjects("c1", tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		for topic, want := range tc.topics {
			for _, class := range []string{classCore, classJS} {
				s, _ := topicSubject("c1", class, topic)
				got := false
				for _, f := range subs {
					got = got || server.SubjectMatchesFilter(s, f)
				}
				if got != want {
					t.Errorf("filter %q (subjects %v) vs topic %q (%s): match %v, want %v", tc.filter, subs, topic, s, got, want)
				}
			}
		}
	}
}

func FuzzSubjectRoundTrip(f *testing.F) {
	f.Add("a/b")
	f.Add("%2E/./%")
	f.Fuzz(func(t *testing.T, topic string) {
		s, err := topicSubject("c", classJS, topic)
		if err != nil {
			return
		}
		if !server.IsValidPublishSubject(s) {
			t.Fatalf("%q -> invalid subject %q", topic, s)
		}
		if back, err := subjectTopic(s); err != nil || back != topic {
			t.Fatalf("%q -> %q -> %q, %v", topic, s, back, err)
		}
	})
}
