package daemon_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokd/tokd/cache/clocktest"
	"github.com/tokd/tokd/emulator"
)

// TestInjectedClock runs the daemon and the emulator on a fake clock
// (Options.Clock) through an outage of the identity domain: the token is
// served while it is valid though its refresh fails, never once it has
// expired, and a token file is judged by the same clock.
func TestInjectedClock(t *testing.T) {
	clock := clocktest.New(time.Now())
	e := newEnvWithClock(t, clock)
	e.writeConfig(e.jwtProfile("ci"), importProfile("imp"))
	d := e.start()
	tok := d.get(t, "ci")
	start := clock.Now()

	e.em.SetOutage(emulator.ServerErrorFault(http.StatusServiceUnavailable))
	// Past every refresh time (at most 46 minutes into the hour), with the
	// token still valid: the failing refreshes do not stop it being served.
	clock.AdvanceTo(start.Add(50 * time.Minute))
	if got := d.get(t, "ci"); got.AccessToken != tok.AccessToken {
		t.Errorf("during the outage the daemon serves another token than the valid one it holds")
	}
	// Within ten seconds of its expiry the token is no longer served, and
	// none other is to be had.
	clock.AdvanceTo(tok.ExpiresAt.Add(-5 * time.Second))
	got, err := d.client.Token("ci")
	if err == nil {
		e.saw(got.AccessToken)
		t.Fatalf("get ci %v before the expiry, during an outage, served a token; want an error", 5*time.Second)
	}
	if status := apiStatus(err); status != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "503") {
		t.Errorf("get ci of an expired token during an outage: %v (status %d), want 503 naming the last error", err, status)
	}
	if st := profileStatus(d.status(t), "ci"); st == nil || st.State == "valid" || st.LastError == "" {
		t.Errorf("status of ci after its expiry during an outage = %+v, want not valid, with the last error", st)
	}

	// A token file valid by the wall clock but expired by the daemon's.
	body, _ := tokFile(t, 30*time.Minute)
	if _, err := d.client.Import("imp", body); apiStatus(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "expired") {
		t.Errorf("import of a token expired by the daemon's clock: %v, want 400 saying it expired", err)
	}
}
