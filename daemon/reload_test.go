package daemon_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/store"
)

// TestReload sends SIGHUP (through Options.Hangup) after rewriting the
// configuration file. Each case starts a daemon serving profiles a and b.
func TestReload(t *testing.T) {
	for _, tc := range []struct {
		name string
		// next returns the new configuration file's content.
		next func(e *env) string
		// outcome is "reloaded" or "refused".
		outcome string
		// profiles are the profiles status lists afterwards.
		profiles []string
		// requests is the number of token requests the reload and the
		// gets of every listed profile cause.
		requests int
		// fresh are the listed profiles whose token must change; the
		// others keep theirs.
		fresh []string
		// gone are profiles that must answer 404.
		gone []string
		// logLine is in the reload's log line.
		logLine string
	}{
		{
			name:     "added profile appears and serves",
			next:     func(e *env) string { return e.jwtProfile("a") + e.jwtProfile("b") + e.jwtProfile("c") },
			outcome:  "reloaded",
			profiles: []string{"a", "b", "c"},
			requests: 1,
			fresh:    []string{"c"},
			logLine:  "profiles=3",
		},
		{
			name:     "removed profile disappears",
			next:     func(e *env) string { return e.jwtProfile("a") },
			outcome:  "reloaded",
			profiles: []string{"a"},
			gone:     []string{"b"},
			logLine:  "profiles=1",
		},
		{
			name:     "unchanged profiles keep their tokens",
			next:     func(e *env) string { return e.jwtProfile("b") + e.jwtProfile("a") },
			outcome:  "reloaded",
			profiles: []string{"a", "b"},
			logLine:  "profiles=2",
		},
		{
			name:     "access control change keeps the token",
			next:     func(e *env) string { return e.jwtProfile("a", "allowed_uids = [1000]") + e.jwtProfile("b") },
			outcome:  "reloaded",
			profiles: []string{"a", "b"},
			logLine:  "profiles=2",
		},
		{
			name: "changed profile gets a new token",
			next: func(e *env) string {
				return e.jwtProfile("a", "refresh_token = true") + e.jwtProfile("b")
			},
			outcome:  "reloaded",
			profiles: []string{"a", "b"},
			requests: 1,
			fresh:    []string{"a"},
			logLine:  "profiles=2",
		},
		{
			name:     "unknown key is refused, the old configuration serves",
			next:     func(e *env) string { return "bogus = 1\n" + e.jwtProfile("a") },
			outcome:  "refused",
			profiles: []string{"a", "b"},
			logLine:  "bogus: unknown key",
		},
		{
			name:     "syntax error is refused, the old configuration serves",
			next:     func(e *env) string { return "[profiles.a\n" },
			outcome:  "refused",
			profiles: []string{"a", "b"},
			logLine:  "line 2, column",
		},
		{
			name:     "missing file is refused, the old configuration serves",
			next:     func(*env) string { return "" },
			outcome:  "refused",
			profiles: []string{"a", "b"},
			logLine:  "no such file",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(e.jwtProfile("a"), e.jwtProfile("b"))
			d := e.start()
			before := map[string]string{}
			for _, p := range []string{"a", "b"} {
				before[p] = d.get(t, p).AccessToken
			}
			requests := e.requests()

			if next := tc.next(e); next != "" {
				e.writeConfig(next)
			} else if err := os.Remove(e.cfgPath); err != nil {
				t.Fatal(err)
			}
			from := e.logs.Len()
			if got := d.reload(t); got != tc.outcome {
				t.Fatalf("reload %s, want %s; logs:\n%s", got, tc.outcome, e.logs.String()[from:])
			}
			if line := e.logs.waitFor(t, from, "configuration reloaded", "reload refused"); !strings.Contains(line, tc.logLine) {
				t.Errorf("reload log line %q does not contain %q", line, tc.logLine)
			}

			if got := profileNames(d.status(t)); !cmp.Equal(got, tc.profiles) {
				t.Errorf("status lists %q after the reload, want %q", got, tc.profiles)
			}
			for _, p := range tc.profiles {
				tok := d.get(t, p).AccessToken
				e.verifyIssued(t, tok)
				old, had := before[p]
				switch fresh := slices.Contains(tc.fresh, p); {
				case fresh && tok == old:
					t.Errorf("profile %s still serves its old token", p)
				case !fresh && had && tok != old:
					t.Errorf("profile %s lost its token in the reload", p)
				}
			}
			for _, p := range tc.gone {
				if _, err := d.client.Token(p); !errors.Is(err, client.ErrNotFound) {
					t.Errorf("get %s after its removal: %v (status %d), want 404", p, err, apiStatus(err))
				}
			}
			if got := e.requests() - requests; got != tc.requests {
				t.Errorf("the reload and the gets made %d token requests, want %d", got, tc.requests)
			}

			// The daemon still reloads afterwards: a valid configuration
			// is taken.
			e.writeConfig(e.jwtProfile("a"), e.jwtProfile("z"))
			if got := d.reload(t); got != "reloaded" {
				t.Fatalf("a valid configuration after the case: %s", got)
			}
			if got, want := profileNames(d.status(t)), []string{"a", "z"}; !cmp.Equal(got, want) {
				t.Errorf("status lists %q after a second reload, want %q", got, want)
			}

			// A removed profile's stored token went with it.
			if err := d.stop(); err != nil {
				t.Fatalf("stopping the daemon: %v", err)
			}
			st := e.openStore(t, "the store after the reloads")
			defer st.Close()
			if _, err := st.Get("b"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the removed profile b still has a stored record: %v", err)
			}
			// Unless its settings changed (and changed back), a kept its.
			if _, err := st.Get("a"); err != nil && !slices.Contains(tc.fresh, "a") {
				t.Errorf("the kept profile a lost its stored record: %v", err)
			}
		})
	}
}
