package daemon_test

import (
	"testing"
	"time"

	"github.com/tokd/tokd/cache/clocktest"
)

// TestStartJitter runs the daemon with start_jitter on a fake clock: a
// profile with no token is fetched at a moment drawn within the window,
// not at start, while a caller asking for a token gets one at once.
func TestStartJitter(t *testing.T) {
	clock := clocktest.New(time.Now())
	e := newEnvWithClock(t, clock)
	e.writeConfig(`start_jitter = "10m"`, e.jwtProfile("asked"), e.jwtProfile("idle"))
	start := clock.Now()
	d := e.start()

	idle := profileStatus(d.status(t), "idle")
	if idle == nil || idle.State != "empty" || idle.NextRefresh == nil {
		t.Fatalf("idle profile at start: %+v, want empty with its first fetch planned", idle)
	}
	if at := *idle.NextRefresh; !at.After(start) || at.After(start.Add(10*time.Minute)) {
		t.Fatalf("idle profile's first fetch planned at start+%v, want within (0, 10m]", at.Sub(start))
	}

	// A caller does not wait for the jitter.
	tok := d.get(t, "asked")
	if tok.AccessToken == "" {
		t.Fatal("get asked: empty token")
	}
	if !clock.Now().Equal(start) {
		t.Fatalf("the clock moved during the test's get")
	}

	// At its planned moment the idle profile's fetch starts by itself.
	clock.AdvanceTo(*idle.NextRefresh)
	if st := profileStatus(d.status(t), "idle"); st == nil || (st.State != "refreshing" && st.State != "valid") {
		t.Errorf("idle profile at its planned first fetch: %+v, want refreshing or valid", st)
	}
	e.saw(d.get(t, "idle").AccessToken)
	e.saw(tok.AccessToken)
}
