package daemon_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/tokd/tokd/daemon"
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

	// Shutdown begins while the get waits for the token endpoint; the
	// endpoint answers only then. The request in flight still gets its
	// token: the cache runs until the server has drained.
	d.cancel()
	select {
	case <-d.stopping:
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not call Options.Stopping")
	}
	release()
	if err := d.stop(); err != nil {
		t.Fatalf("daemon.Run = %v after a graceful shutdown, want nil", err)
	}
	r := <-got
	if r.status != 200 {
		t.Fatalf("the in-flight get ended with %v (status %d), want its token", r.err, r.status)
	}
	e.saw(r.token)
	e.verifyIssued(t, r.token)
	if _, err := os.Lstat(d.socket); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there after shutdown: %v", err)
	}
	e.openStore(t, "the store after shutdown").Close()
}

// TestNoReadyWhenStoppedBeforeServing: a daemon whose context has ended
// before it was ready stops without calling Ready, so that systemd never
// gets READY=1 after STOPPING=1 (nor a watchdog started after its stop).
func TestNoReadyWhenStoppedBeforeServing(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci"))
	cfg, err := e.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		opts := e.baseOptions(cfg)
		stopping := false
		opts.Stopping = func() { stopping = true }
		opts.Ready = func(string) {
			t.Errorf("Ready called by a daemon whose context had ended (after Stopping: %v)", stopping)
		}
		if err := daemon.Run(ctx, opts); err != nil {
			t.Fatalf("Run with an ended context = %v, want nil", err)
		}
	}
}
