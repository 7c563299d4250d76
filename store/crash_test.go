package store_test

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/store"
)

// Environment variables of the child process of TestCrashSafety.
const (
	crashChildEnv = "STORE_CHILD"       // "1" in the child
	crashDirEnv   = "STORE_CHILD_DIR"   // the state directory
	crashStartEnv = "STORE_CHILD_START" // the index of the child's first Put
)

// crashProfiles is how many profiles the child cycles through.
const crashProfiles = 13

// crashRecord returns the record of the child's i-th Put. Every field is
// derived from i, so a record read back can be checked for being whole, and
// the access token sizes range from a few bytes to more than a page.
func crashRecord(i int) store.Record {
	issued := time.Unix(1_700_000_000+int64(i), 0).UTC()
	r := store.Record{
		Profile:      fmt.Sprintf("profile-%02d", i%crashProfiles),
		TokenType:    "Bearer",
		AccessToken:  fmt.Sprintf("access-%d-", i) + strings.Repeat("a", i*397%9000),
		RefreshToken: fmt.Sprintf("refresh-%d", i),
		Scope:        strconv.Itoa(i),
		IssuedAt:     issued,
		Expiry:       issued.Add(time.Hour),
		Fingerprint:  fmt.Sprintf("fp-%d", i),
	}
	if i%5 == 0 {
		r.RefreshToken = ""
	}
	return r
}

// runCrashChild puts records in a loop, printing "put N" after Put N has
// returned, until the parent kills it.
func runCrashChild(t *testing.T) {
	start, err := strconv.Atoi(os.Getenv(crashStartEnv))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(os.Getenv(crashDirEnv), store.Options{Key: testKey(3)})
	if err != nil {
		t.Fatal(err)
	}
	for i := start; i < start+100_000; i++ {
		if err := s.Put(crashRecord(i)); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("put %d\n", i)
	}
	t.Fatal("the parent did not kill the child")
}

// TestCrashSafety kills a process that is writing records at several points
// and checks that every record read back afterwards was written whole, and
// that every Put that had returned is there.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashChildEnv) == "1" {
		runCrashChild(t)
		return
	}
	dir := t.TempDir()
	// lastAcked holds, per profile, the index of the last Put the child
	// reported as done.
	lastAcked := map[string]int{}
	for round, killAfter := range []int{1, 2, 9, 40, 150} {
		t.Run(fmt.Sprintf("kill after %d puts", killAfter), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$")
			cmd.Env = append(os.Environ(),
				crashChildEnv+"=1",
				crashDirEnv+"="+dir,
				crashStartEnv+"="+strconv.Itoa(round*100_000))
			var output bytes.Buffer
			cmd.Stderr = &output
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(stdout)
			acked := 0
			for acked < killAfter && lines.Scan() {
				var i int
				if _, err := fmt.Sscanf(lines.Text(), "put %d", &i); err != nil {
					fmt.Fprintln(&output, lines.Text())
					continue
				}
				lastAcked[crashRecord(i).Profile] = i
				acked++
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			if acked < killAfter {
				t.Fatalf("the child stopped after %d puts (%v):\n%s", acked, cmd.ProcessState, output.String())
			}
			if cmd.ProcessState.ExitCode() != -1 {
				t.Fatalf("the child exited (%v) instead of being killed:\n%s", cmd.ProcessState, output.String())
			}

			var logs bytes.Buffer
			s, err := store.Open(dir, store.Options{Key: testKey(3), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("Open after the kill: %v", err)
			}
			defer s.Close()
			if files := corruptFiles(t, dir); len(files) != 0 || logs.Len() != 0 {
				t.Fatalf("Open after the kill found damage: %v\n%s", files, logs.String())
			}
			records, bad, err := s.LoadAll()
			if err != nil {
				t.Fatalf("LoadAll: %v", err)
			}
			if len(bad) != 0 {
				t.Errorf("LoadAll after the kill: bad records %v", bad)
			}
			found := map[string]bool{}
			for _, r := range records {
				found[r.Profile] = true
				i, err := strconv.Atoi(r.Scope)
				if err != nil {
					t.Errorf("record of %s has scope %q, not a put index", r.Profile, r.Scope)
					continue
				}
				if diff := cmp.Diff(crashRecord(i), r); diff != "" {
					t.Errorf("record of %s is not what put %d wrote (-want +got):\n%s", r.Profile, i, diff)
				}
				if i < lastAcked[r.Profile] {
					t.Errorf("record of %s is from put %d, but put %d had returned", r.Profile, i, lastAcked[r.Profile])
				}
			}
			for p, i := range lastAcked {
				if !found[p] {
					t.Errorf("record of %s is missing, but put %d had returned", p, i)
				}
			}
		})
	}
}
