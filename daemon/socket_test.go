package daemon_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokd/tokd/store"
)

// TestSocketInTheWay starts a daemon where its socket path is already
// taken: a socket nobody listens on is replaced, anything else makes Run
// fail with a message that says why.
func TestSocketInTheWay(t *testing.T) {
	for _, tc := range []struct {
		name string
		// prepare puts something at e.socket, or changes it, and may
		// return a function that checks what it put there after Run failed.
		prepare func(t *testing.T, e *env) (check func())
		// wantErr is in Run's error; "" means Run serves.
		wantErr string
	}{
		{
			name: "stale socket is replaced",
			prepare: func(t *testing.T, e *env) func() {
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: e.socket, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				ln.SetUnlinkOnClose(false)
				ln.Close()
				if _, err := os.Lstat(e.socket); err != nil {
					t.Fatalf("the stale socket is not there: %v", err)
				}
				return nil
			},
		},
		{
			name: "live socket: address already in use",
			prepare: func(t *testing.T, e *env) func() {
				path := e.socket
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						c.Close()
					}
				}()
				return func() {
					// The other listener keeps its socket and still answers.
					c, err := net.DialTimeout("unix", path, waitTimeout)
					if err != nil {
						t.Errorf("the other listener's socket no longer answers: %v", err)
						return
					}
					c.Close()
				}
			},
			wantErr: "address already in use",
		},
		{
			name: "regular file in the way",
			prepare: func(t *testing.T, e *env) func() {
				path := e.socket
				writeFile(t, path, []byte("not a socket"), 0o600)
				return func() {
					if data, err := os.ReadFile(path); err != nil || string(data) != "not a socket" {
						t.Errorf("the file in the way was touched: %q, %v", data, err)
					}
				}
			},
			wantErr: "not a socket",
		},
		{
			name: "world-writable socket directory",
			prepare: func(t *testing.T, e *env) func() {
				if err := os.Chmod(filepath.Dir(e.socket), 0o777); err != nil {
					t.Fatal(err)
				}
				return nil
			},
			wantErr: "writable by others",
		},
		{
			name: "path too long for sun_path",
			prepare: func(t *testing.T, e *env) func() {
				e.socket = filepath.Join(filepath.Dir(e.socket), strings.Repeat("x", 108))
				return nil
			},
			wantErr: "the limit is 107",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(e.jwtProfile("ci"))
			check := tc.prepare(t, e)
			if tc.wantErr == "" {
				d := e.start()
				d.get(t, "ci")
				return
			}
			cfg, err := e.loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = e.runFailing(t, e.baseOptions(cfg))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("daemon.Run = %v, want an error saying %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), filepath.Dir(e.socket)) {
				t.Errorf("daemon.Run's error %q does not name the socket or its directory", err)
			}
			if check != nil {
				check()
			}
			// The failed daemon closed its store.
			e.openStore(t, "the store of the failed daemon").Close()
		})
	}
}

// TestSecondDaemon runs a second daemon beside a first: on the same state
// directory it fails at once naming the directory; on the same socket it
// fails with "address already in use". The first keeps serving.
func TestSecondDaemon(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(e.jwtProfile("ci"))
	first := e.start()
	tok := first.get(t, "ci")
	cfg, err := e.loadConfig()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("same state directory", func(t *testing.T) {
		opts := e.baseOptions(cfg)
		opts.Socket = filepath.Join(shortTempDir(t), "second.sock")
		start := time.Now()
		err := e.runFailing(t, opts)
		if want := "another tokd is using " + e.stateDir; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("daemon.Run = %v, want an error saying %q", err, want)
		}
		// "At once": the store's lock timeout, not a hang.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the second daemon took %v to fail", d)
		}
		if _, err := os.Lstat(opts.Socket); !os.IsNotExist(err) {
			t.Errorf("the second daemon left a socket behind: %v", err)
		}
	})
	t.Run("same socket", func(t *testing.T) {
		opts := e.baseOptions(cfg)
		opts.StateDir = filepath.Join(t.TempDir(), "state")
		err := e.runFailing(t, opts)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("daemon.Run = %v, want an error saying address already in use", err)
		}
	})
	if got := first.get(t, "ci"); got.AccessToken != tok.AccessToken {
		t.Errorf("the first daemon serves another token after the second failed")
	}
	// The first daemon still holds its store.
	if st, err := store.Open(e.stateDir, store.Options{Key: make([]byte, 32)}); !errors.Is(err, store.ErrLocked) {
		t.Errorf("opening the first daemon's store: %v, want it locked", err)
		if err == nil {
			st.Close()
		}
	}
}
