package cluster

import "testing"

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{"2.9.10": false, "2.10.22": false, "2.11.0": true, "2.11.0-RC.1": true, "2.15.3": true, "3.0": true, "junk": false, "": false} {
		if err := checkVersion(v); (err == nil) != ok {
			t.Errorf("checkVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}
