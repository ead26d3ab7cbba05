package main

import (
	"fmt"
	"syscall"
)

// planOptions says how many rounds of each sort a run has.
type planOptions struct {
	kills  int // SIGKILL rounds per kind (QoS × version × subscriber mode)
	terms  int // SIGTERM control rounds per selected kind
	nosync int // SIGKILL rounds with persistence.sync false, per selected kind
	// all selects every kind for the SUBACK rounds, the SIGTERM and
	// sync=false rounds and the no-restart controls; otherwise a fixed
	// selection that still covers both QoS levels, versions and modes.
	all bool
}

// forms are the named run sizes: short is what the Go test runs (35
// rounds), long is what make soak runs (128 rounds).
var forms = map[string]planOptions{
	"short": {kills: 3, terms: 1, nosync: 1},
	"long":  {kills: 10, terms: 2, nosync: 2, all: true},
}

// kind is a combination of QoS, protocol version and subscriber mode.
type kind struct {
	qos     byte
	version byte
	online  bool
}

func (k kind) String() string {
	v := "v311"
	if k.version == mqtt5 {
		v = "v5"
	}
	mode := "offline"
	if k.online {
		mode = "online"
	}
	return fmt.Sprintf("q%d-%s-%s", k.qos, v, mode)
}

func (k kind) spec(suffix string, stop syscall.Signal, sync bool) roundSpec {
	return roundSpec{Name: k.String() + "-" + suffix, QoS: k.qos, Version: k.version, Online: k.online, Stop: stop, Sync: sync}
}

// kinds lists the eight kinds in a fixed order.
func kinds() []kind {
	var ks []kind
	for _, qos := range []byte{1, 2} {
		for _, v := range []byte{mqtt311, mqtt5} {
			for _, online := range []bool{false, true} {
				ks = append(ks, kind{qos, v, online})
			}
		}
	}
	return ks
}

// The selections of the short form.
var (
	// subackKinds cover both QoS levels, both versions and both modes.
	subackKinds = []kind{{1, mqtt311, true}, {2, mqtt311, false}, {1, mqtt5, false}, {2, mqtt5, true}}
	// termKinds are the QoS 2 kinds: a graceful restart loses nothing
	// today but delivers QoS 2 messages twice.
	termKinds = []kind{{2, mqtt311, false}, {2, mqtt311, true}, {2, mqtt5, false}, {2, mqtt5, true}}
	// nosyncKinds are offline sessions, whose messages live only in the
	// store.
	nosyncKinds = []kind{{1, mqtt311, false}, {2, mqtt5, false}}
	// baselineKinds: one no-restart control.
	baselineKinds = []kind{{2, mqtt5, false}}
)

// plan lists the rounds of a run.
func plan(o planOptions) []roundSpec {
	all := kinds()
	pick := func(selection []kind) []kind {
		if o.all {
			return all
		}
		return selection
	}
	var specs []roundSpec
	for _, k := range all {
		for i := 1; i <= o.kills; i++ {
			specs = append(specs, k.spec(fmt.Sprintf("kill-%d", i), syscall.SIGKILL, true))
		}
	}
	for _, k := range pick(nosyncKinds) {
		for i := 1; i <= o.nosync; i++ {
			specs = append(specs, k.spec(fmt.Sprintf("kill-nosync-%d", i), syscall.SIGKILL, false))
		}
	}
	for _, k := range pick(subackKinds) {
		s := k.spec("suback", syscall.SIGKILL, true)
		s.AfterSuback = true
		specs = append(specs, s)
	}
	for _, k := range pick(termKinds) {
		for i := 1; i <= o.terms; i++ {
			specs = append(specs, k.spec(fmt.Sprintf("term-%d", i), syscall.SIGTERM, true))
		}
	}
	for _, k := range pick(baselineKinds) {
		specs = append(specs, k.spec("norestart", 0, true))
	}
	return specs
}
