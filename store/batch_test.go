package store

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func batchRecord(i int) Record {
	issued := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return Record{
		Profile:      fmt.Sprintf("profile-%03d", i),
		TokenType:    "Bearer",
		AccessToken:  fmt.Sprintf("access-%d", i),
		RefreshToken: fmt.Sprintf("refresh-%d", i),
		IssuedAt:     issued,
		Expiry:       issued.Add(time.Minute),
		Fingerprint:  "fp",
	}
}

// holdWrites begins a write transaction, which keeps the committer from
// writing until the returned function rolls it back.
func holdWrites(t *testing.T, s *Store) (release func()) {
	t.Helper()
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

// waitQueued returns once n Puts wait for their commit. It does not sleep:
// the Puts it waits for are already running and will queue.
func waitQueued(s *Store, n int) {
	for s.queued.Load() < int64(n) {
		runtime.Gosched()
	}
}

// TestConcurrentPutsShareTransactions puts many records at once while a
// transaction holds the writer lock: they are committed together, in
// fewer transactions than Puts, and every one is there after a reopen.
func TestConcurrentPutsShareTransactions(t *testing.T) {
	const n = 200
	dir := t.TempDir()
	key := bytes.Repeat([]byte{4}, KeySize)
	s, err := Open(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	release := holdWrites(t, s)
	errs := make(chan error, n)
	want := make([]Record, n)
	for i := range n {
		want[i] = batchRecord(i)
		go func() { errs <- s.Put(want[i]) }()
	}
	waitQueued(s, n)
	release()
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// The committer had taken at most the Puts queued before it found
	// the writer lock held; the rest waited for the next transaction.
	if c := s.commits.Load(); c < 1 || c > 2 {
		t.Errorf("%d Puts committed in %d transactions, want 1 or 2", n, c)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, bad, err := s.LoadAll()
	if err != nil || len(bad) != 0 {
		t.Fatalf("LoadAll: %v, %v", bad, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records after reopening (-want +got):\n%s", diff)
	}
}

// TestBatchErrorsReachTheirCaller puts, in one batch, records bbolt
// accepts and one it refuses: only that Put fails, the others are stored.
func TestBatchErrorsReachTheirCaller(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Key: bytes.Repeat([]byte{5}, KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bad := batchRecord(0)
	bad.Profile = strings.Repeat("x", 40_000) // longer than bbolt's largest key
	records := []Record{batchRecord(1), bad, batchRecord(2), batchRecord(3)}

	release := holdWrites(t, s)
	errs := make([]chan error, len(records))
	for i, r := range records {
		errs[i] = make(chan error, 1)
		go func() { errs[i] <- s.Put(r) }()
	}
	waitQueued(s, len(records))
	release()
	for i, r := range records {
		err := <-errs[i]
		if wantErr := r.Profile == bad.Profile; (err != nil) != wantErr {
			t.Errorf("Put of record %d: %v, want an error: %v", i, err, wantErr)
		}
	}
	got, _, err := s.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{batchRecord(1), batchRecord(2), batchRecord(3)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

// TestPutAfterClose checks that a Put after Close fails and that Close
// may be called twice.
func TestPutAfterClose(t *testing.T) {
	s, err := Open(t.TempDir(), Options{Key: bytes.Repeat([]byte{6}, KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(batchRecord(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(batchRecord(2)); err == nil {
		t.Error("Put after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
