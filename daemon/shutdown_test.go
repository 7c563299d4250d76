package daemon_test

import (
	"os"
	"strings"
	"testing"
)

// TestGracefulShutdown cancels Run's context while a get waits for a token
// fetch the emulator holds: the get gets an answer, Run returns nil, the
// socket file is gone and the store is closed.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci"))
	hang, release := hangFault()
	t.Cleanup(release)
	e.em.SetOutage(hang.fault)
	d := e.start()
	hang.waitTaken(t)

	type result struct {
		status int
		err    error
		token  string
	}
	got := make(chan result, 1)
	go func() {
		tok, err := d.client.Token("ci")
		r := result{status: apiStatus(err), err: err}
		if err == nil {
			r.token = tok.AccessToken
		}
		got <- r
	}()
	waitInGet(t, 1)

	if err := d.stop(); err != nil {
		t.Fatalf("daemon.Run = %v after a graceful shutdown, want nil", err)
	}
	select {
	case <-d.stopping:
	default:
		t.Errorf("Run did not call Options.Stopping")
	}
	r := <-got
	t.Logf("the in-flight get ended with status %d (%v)", r.status, r.err)
	switch r.status {
	case 200:
		e.saw(r.token)
		e.verifyIssued(t, r.token)
	case 503:
		if msg := r.err.Error(); !strings.Contains(msg, "stopped") || strings.Count(msg, "profile ci") != 1 {
			t.Errorf("the in-flight get failed with %q, want it to name the profile once and say the daemon stopped", msg)
		}
	default:
		t.Errorf("the in-flight get ended with %v (status %d), want an answer: 200 or 503", r.err, r.status)
	}
	if _, err := os.Lstat(d.socket); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there after shutdown: %v", err)
	}
	e.openStore(t, "the store after shutdown").Close()
}
