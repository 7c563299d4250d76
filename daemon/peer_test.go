package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// otherUID is the caller the test creates: nobody, in group nogroup
// (its primary group) and suppGID (a supplementary group).
const (
	otherUID = 65534
	suppGID  = 4242
)

// TestOtherUIDIsDenied runs the real client as another uid against a
// daemon run by root: it gets the tokens of the profiles that allow its
// uid, its primary group or one of its supplementary groups, is refused
// (403) every other one, existing or not, and sees only its profiles in
// status.
func TestOtherUIDIsDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a caller with another uid needs root; run the tests as root to check SO_PEERCRED authorisation")
	}
	e := newEnv(t)
	e.writeConfig(
		e.jwtProfile("secret", "allowed_uids = [1000]"),
		e.jwtProfile("shared", "allowed_uids = [1000, 65534]"),
		e.jwtProfile("bygid", "allowed_gids = [65534]"),
		e.jwtProfile("bysupp", "allowed_gids = [4242]"),
	)
	// The socket's directory must be searchable by the other uid.
	if err := os.Chmod(filepath.Dir(e.socket), 0o755); err != nil {
		t.Fatal(err)
	}
	d := e.start()
	rootSecret := d.get(t, "secret")
	rootShared := d.get(t, "shared")
	rootByGID := d.get(t, "bygid")
	rootBySupp := d.get(t, "bysupp")
	requests := e.requests()

	tokBody, tokAccess := tokFile(t, time.Hour)
	e.saw(tokAccess)
	ops := []string{
		"get:secret", "refresh:secret", "forget:secret", "import:secret",
		"get:nosuch", "forget:nosuch",
		"get:shared", "get:bygid", "get:bysupp",
		"status",
	}
	c := startChild(t, publicCopyOfTestBinary(t), "client", []string{
		"TOKD_TEST_SOCKET=" + d.socket,
		"TOKD_TEST_OPS=" + strings.Join(ops, " "),
		"TOKD_TEST_TOKFILE=" + string(tokBody),
	}, &syscall.Credential{Uid: otherUID, Gid: otherUID, Groups: []uint32{suppGID}})

	var who childResult
	if err := json.Unmarshal([]byte(c.line(t)), &who); err != nil || who.UID != otherUID {
		t.Fatalf("the child runs as uid %d (%v), want %d", who.UID, err, otherUID)
	}
	results := map[string]childResult{}
	for range ops {
		var r childResult
		if err := json.Unmarshal([]byte(c.line(t)), &r); err != nil {
			t.Fatal(err)
		}
		e.saw(r.Token)
		results[r.Op+":"+r.Profile] = r
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("the child failed: %v; stderr:\n%s", err, c.stderr.String())
	}

	for _, tc := range []struct {
		op     string
		status int
		token  string // the token it must get, for a 200
	}{
		{op: "get:secret", status: 403},
		{op: "refresh:secret", status: 403},
		{op: "forget:secret", status: 403},
		{op: "import:secret", status: 403},
		// A denied caller cannot tell a missing profile from a forbidden one.
		{op: "get:nosuch", status: 403},
		{op: "forget:nosuch", status: 403},
		{op: "get:shared", status: 200, token: rootShared.AccessToken},
		{op: "get:bygid", status: 200, token: rootByGID.AccessToken},
		{op: "get:bysupp", status: 200, token: rootBySupp.AccessToken},
	} {
		t.Run(tc.op, func(t *testing.T) {
			r, ok := results[tc.op]
			if !ok {
				t.Fatalf("the child did not report %s", tc.op)
			}
			if r.Status != tc.status {
				t.Fatalf("%s as uid %d: status %d (%s), want %d", tc.op, otherUID, r.Status, r.Error, tc.status)
			}
			if r.Token != tc.token {
				t.Errorf("%s as uid %d: got another token than root's", tc.op, otherUID)
			}
			if tc.status == 403 && !strings.Contains(r.Error, "may not use it") {
				t.Errorf("%s: message %q does not say why", tc.op, r.Error)
			}
		})
	}
	t.Run("status lists only the allowed profiles", func(t *testing.T) {
		r := results["status:"]
		if r.Status != 200 {
			t.Fatalf("status as uid %d: %d (%s)", otherUID, r.Status, r.Error)
		}
		if want := []string{"bygid", "bysupp", "shared"}; !cmp.Equal(sortedCopy(r.Profiles), want) {
			t.Errorf("status as uid %d lists %q, want %q", otherUID, r.Profiles, want)
		}
	})
	t.Run("the denied requests changed nothing", func(t *testing.T) {
		if got := d.get(t, "secret"); got.AccessToken != rootSecret.AccessToken {
			t.Errorf("the secret profile's token changed after denied requests")
		}
		if got := e.requests(); got != requests {
			t.Errorf("the other uid caused %d token requests, want 0", got-requests)
		}
		if !strings.Contains(e.logs.String(), "request denied") {
			t.Errorf("no log line for the denied requests")
		}
	})
}
