package store_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/tokd/tokd/store"
)

// testKey returns a sealing key made of the byte b.
func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, store.KeySize) }

// openStore opens the store in dir with key and closes it when the test ends.
func openStore(t *testing.T, dir string, key []byte) *store.Store {
	t.Helper()
	s, err := store.Open(dir, store.Options{Key: key})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// sampleRecord returns a complete record for profile with distinctive tokens.
func sampleRecord(profile string) store.Record {
	issued := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	return store.Record{
		Profile:      profile,
		TokenType:    "Bearer",
		AccessToken:  "eyJhbGciOi.access-token-of-" + profile + ".c2lnbmF0dXJl",
		RefreshToken: "refresh-token-of-" + profile + "-0123456789",
		Scope:        "openid profile read:things",
		IssuedAt:     issued,
		Expiry:       issued.Add(time.Hour),
		Fingerprint:  "sha256:" + strings.Repeat("ab", 32),
	}
}

// updateRaw runs fn in a write transaction on the bbolt file at path,
// bypassing the store.
func updateRaw(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("bolt.Open(%s): %v", path, err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatalf("raw update of %s: %v", path, err)
	}
}

// corruptFiles returns the files Open has moved aside in dir.
func corruptFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, store.DBFileName+".corrupt-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	local := time.FixedZone("UTC+5:30", 5*3600+1800)
	tests := []struct {
		name   string
		record store.Record
	}{
		{name: "complete", record: sampleRecord("ci")},
		{name: "no refresh token", record: func() store.Record {
			r := sampleRecord("deploy")
			r.RefreshToken = ""
			return r
		}()},
		{name: "only required fields", record: store.Record{Profile: "bare", AccessToken: "x"}},
		{name: "times in another zone with monotonic clock", record: func() store.Record {
			r := sampleRecord("zoned")
			r.IssuedAt = time.Now().In(local)
			r.Expiry = r.IssuedAt.Add(90 * time.Minute)
			return r
		}()},
		{name: "unicode profile name", record: sampleRecord("prod/éu-west ☁")},
		{name: "large token spanning pages", record: func() store.Record {
			r := sampleRecord("big")
			r.AccessToken = strings.Repeat("A", 200_000)
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, testKey(1))
			if err := s.Put(tt.record); err != nil {
				t.Fatalf("Put: %v", err)
			}
			got, err := s.Get(tt.record.Profile)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if diff := cmp.Diff(tt.record, got); diff != "" {
				t.Errorf("Get after Put (-want +got):\n%s", diff)
			}
			if got.IssuedAt.Location() != time.UTC || got.Expiry.Location() != time.UTC {
				t.Errorf("times come back in %v and %v, want UTC", got.IssuedAt.Location(), got.Expiry.Location())
			}

			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			s = openStore(t, dir, testKey(1))
			got, err = s.Get(tt.record.Profile)
			if err != nil {
				t.Fatalf("Get after reopen: %v", err)
			}
			if diff := cmp.Diff(tt.record, got); diff != "" {
				t.Errorf("Get after reopen (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPutReplacesAndLoadAllOrders(t *testing.T) {
	s := openStore(t, t.TempDir(), testKey(1))
	for _, p := range []string{"zeta", "alpha", "mid"} {
		if err := s.Put(sampleRecord(p)); err != nil {
			t.Fatal(err)
		}
	}
	newer := sampleRecord("mid")
	newer.AccessToken = "a newer access token"
	newer.RefreshToken = ""
	if err := s.Put(newer); err != nil {
		t.Fatal(err)
	}

	got, bad, err := s.LoadAll()
	if err != nil {
		t.Fatalf("LoadAll: %v", err)
	}
	if len(bad) != 0 {
		t.Errorf("LoadAll bad records: %v", bad)
	}
	want := []store.Record{sampleRecord("alpha"), newer, sampleRecord("zeta")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LoadAll (-want +got):\n%s", diff)
	}
}

func TestPutRejectsIncompleteRecords(t *testing.T) {
	tests := []struct {
		name    string
		record  store.Record
		wantErr string
	}{
		{name: "no profile", record: store.Record{AccessToken: "x"}, wantErr: "put record: empty profile name"},
		{name: "no access token", record: store.Record{Profile: "p"}, wantErr: `put record for profile "p": empty access token`},
	}
	s := openStore(t, t.TempDir(), testKey(1))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Put(tt.record)
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Put = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestGetAndDelete(t *testing.T) {
	s := openStore(t, t.TempDir(), testKey(1))
	if _, err := s.Get("nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(nobody) = %v, want ErrNotFound", err)
	}
	if err := s.Put(sampleRecord("p")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("p"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get("p"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete("p"); err != nil {
		t.Errorf("Delete of a missing record = %v, want nil", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := openStore(t, t.TempDir(), testKey(1))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			profile := fmt.Sprintf("worker-%d", w)
			for range 20 {
				if err := s.Put(sampleRecord(profile)); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Get(profile); err != nil {
					t.Error(err)
					return
				}
				if _, bad, err := s.LoadAll(); err != nil || len(bad) != 0 {
					t.Errorf("LoadAll: %v, %v", bad, err)
					return
				}
			}
		})
	}
	wg.Wait()
	records, _, err := s.LoadAll()
	if err != nil || len(records) != 4 {
		t.Errorf("LoadAll after the workers = %d records, %v; want 4", len(records), err)
	}
}

func TestTokensNeverReachTheFile(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testKey(7))
	records := []store.Record{sampleRecord("one"), sampleRecord("two"), sampleRecord("three")}
	for _, r := range records {
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite and delete too, so that freed pages are in the file.
	if err := s.Put(records[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("three"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(filepath.Join(dir, store.DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(records[0].Fingerprint)) {
		t.Fatalf("the file does not contain the clear fingerprint; is this the right file?")
	}
	for _, r := range records {
		for _, secret := range []string{r.AccessToken, r.RefreshToken} {
			encodings := map[string]string{
				"plain":          secret,
				"base64":         base64.StdEncoding.EncodeToString([]byte(secret)),
				"base64 raw":     base64.RawStdEncoding.EncodeToString([]byte(secret)),
				"base64 url":     base64.URLEncoding.EncodeToString([]byte(secret)),
				"hex":            hex.EncodeToString([]byte(secret)),
				"token fragment": secret[len(secret)/4 : len(secret)/4+12],
			}
			for name, enc := range encodings {
				if bytes.Contains(raw, []byte(enc)) {
					t.Errorf("the database file contains the %s form of a token of profile %q", name, r.Profile)
				}
			}
		}
	}
}

func TestSealingUsesFreshNonces(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testKey(1))
	var values [][]byte
	for range 2 {
		if err := s.Put(sampleRecord("p")); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		updateRaw(t, s.Path(), func(tx *bolt.Tx) error {
			values = append(values, bytes.Clone(tx.Bucket([]byte("tokens")).Get([]byte("p"))))
			return nil
		})
		s = openStore(t, dir, testKey(1))
	}
	if bytes.Equal(values[0], values[1]) {
		t.Errorf("sealing the same record twice gave the same bytes")
	}
}

func TestWrongKeyFailsOnlyThatRecord(t *testing.T) {
	dir := t.TempDir()
	oldKey, newKey := testKey(1), testKey(2)

	s := openStore(t, dir, oldKey)
	if err := s.Put(sampleRecord("old")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, newKey)
	if err := s.Put(sampleRecord("new")); err != nil {
		t.Fatal(err)
	}

	good, bad, err := s.LoadAll()
	if err != nil {
		t.Fatalf("LoadAll: %v", err)
	}
	if diff := cmp.Diff([]store.Record{sampleRecord("new")}, good); diff != "" {
		t.Errorf("LoadAll good records (-want +got):\n%s", diff)
	}
	if len(bad) != 1 || bad[0].Profile != "old" || !errors.Is(bad[0], store.ErrUnsealFailed) {
		t.Errorf("LoadAll bad records = %v, want one for profile old matching ErrUnsealFailed", bad)
	}

	_, err = s.Get("old")
	if recErr, ok := errors.AsType[*store.RecordError](err); !ok || recErr.Profile != "old" || !errors.Is(err, store.ErrUnsealFailed) {
		t.Errorf("Get(old) = %v, want a *RecordError for old matching ErrUnsealFailed", err)
	}
	if _, err := s.Get("new"); err != nil {
		t.Errorf("Get(new) = %v", err)
	}
}

func TestTamperedRecordFailsOnlyThatRecord(t *testing.T) {
	// editJSON returns a tamper function that edits the JSON value of bob.
	editJSON := func(edit func(m map[string]any)) func(b *bolt.Bucket) error {
		return func(b *bolt.Bucket) error {
			var m map[string]any
			if err := json.Unmarshal(b.Get([]byte("bob")), &m); err != nil {
				return err
			}
			edit(m)
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			return b.Put([]byte("bob"), v)
		}
	}
	tests := []struct {
		name    string
		tamper  func(tokens *bolt.Bucket) error
		wantErr error
	}{
		{
			name: "record of another profile copied in",
			tamper: func(b *bolt.Bucket) error {
				return b.Put([]byte("bob"), bytes.Clone(b.Get([]byte("alice"))))
			},
			wantErr: store.ErrUnsealFailed,
		},
		{
			name: "ciphertext bit flipped",
			tamper: editJSON(func(m map[string]any) {
				ct, _ := base64.StdEncoding.DecodeString(m["access_token"].(string))
				ct[len(ct)/2] ^= 1
				m["access_token"] = base64.StdEncoding.EncodeToString(ct)
			}),
			wantErr: store.ErrUnsealFailed,
		},
		{
			name:    "refresh token moved to the access token field",
			tamper:  editJSON(func(m map[string]any) { m["access_token"] = m["refresh_token"] }),
			wantErr: store.ErrUnsealFailed,
		},
		{
			name:    "clear expiry extended",
			tamper:  editJSON(func(m map[string]any) { m["expiry"] = "2099-01-01T00:00:00Z" }),
			wantErr: store.ErrUnsealFailed,
		},
		{
			name:    "clear fingerprint changed",
			tamper:  editJSON(func(m map[string]any) { m["fingerprint"] = "sha256:other" }),
			wantErr: store.ErrUnsealFailed,
		},
		{
			name:    "clear scope widened",
			tamper:  editJSON(func(m map[string]any) { m["scope"] = "admin" }),
			wantErr: store.ErrUnsealFailed,
		},
		{
			name:    "not JSON",
			tamper:  func(b *bolt.Bucket) error { return b.Put([]byte("bob"), []byte("garbage")) },
			wantErr: store.ErrCorruptRecord,
		},
		{
			name:    "unknown record format",
			tamper:  editJSON(func(m map[string]any) { m["v"] = 99 }),
			wantErr: store.ErrCorruptRecord,
		},
		{
			name:    "access token missing",
			tamper:  editJSON(func(m map[string]any) { delete(m, "access_token") }),
			wantErr: store.ErrCorruptRecord,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, testKey(1))
			for _, p := range []string{"alice", "bob", "carol"} {
				if err := s.Put(sampleRecord(p)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			updateRaw(t, s.Path(), func(tx *bolt.Tx) error { return tt.tamper(tx.Bucket([]byte("tokens"))) })

			s = openStore(t, dir, testKey(1))
			good, bad, err := s.LoadAll()
			if err != nil {
				t.Fatalf("LoadAll: %v", err)
			}
			if diff := cmp.Diff([]store.Record{sampleRecord("alice"), sampleRecord("carol")}, good); diff != "" {
				t.Errorf("LoadAll good records (-want +got):\n%s", diff)
			}
			if len(bad) != 1 || bad[0].Profile != "bob" || !errors.Is(bad[0], tt.wantErr) {
				t.Fatalf("LoadAll bad records = %v, want one for bob matching %v", bad, tt.wantErr)
			}
			for _, secret := range []string{sampleRecord("bob").AccessToken, sampleRecord("bob").RefreshToken} {
				if strings.Contains(bad[0].Error(), secret) {
					t.Errorf("the error %q contains a token", bad[0])
				}
			}
			if _, err := s.Get("bob"); !errors.Is(err, tt.wantErr) {
				t.Errorf("Get(bob) = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSecondOpenFailsWithLockedError(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
	}{
		{name: "default timeout", timeout: 0},
		{name: "short timeout", timeout: 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first := openStore(t, dir, testKey(1))
			if err := first.Put(sampleRecord("p")); err != nil {
				t.Fatal(err)
			}

			second, err := store.Open(dir, store.Options{Key: testKey(1), Timeout: tt.timeout})
			if err == nil {
				_ = second.Close()
				t.Fatal("second Open succeeded")
			}
			if want := "another tokd is using " + dir; err.Error() != want {
				t.Errorf("second Open error = %q, want %q", err, want)
			}
			if !errors.Is(err, store.ErrLocked) {
				t.Errorf("second Open error %v does not match ErrLocked", err)
			}

			if _, err := first.Get("p"); err != nil {
				t.Errorf("first store after the failed second Open: Get = %v", err)
			}
			if files := corruptFiles(t, dir); len(files) != 0 {
				t.Errorf("a locked database was moved aside: %v", files)
			}
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			third := openStore(t, dir, testKey(1))
			if _, err := third.Get("p"); err != nil {
				t.Errorf("Open after Close: Get = %v", err)
			}
		})
	}
}

func TestOpenForcesModes(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{name: "new nested state dir", setup: func(*testing.T, string) {}},
		{name: "existing loose dir and file", setup: func(t *testing.T, dir string) {
			s := openStore(t, dir, testKey(1))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(dir, store.DBFileName), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "var", "lib", "tokd")
			tt.setup(t, dir)
			s := openStore(t, dir, testKey(1))
			if s.Path() != filepath.Join(dir, store.DBFileName) {
				t.Errorf("Path = %q, want %q", s.Path(), filepath.Join(dir, store.DBFileName))
			}
			checkMode(t, dir, 0o700|os.ModeDir)
			checkMode(t, s.Path(), 0o600)
		})
	}
}

// TestOpenRefusesASharedStateDir: a loose state directory that holds
// files other than tokd's (state_dir = "/var/lib" by mistake) is refused
// with an error naming such a file, and its mode is left alone; one that
// holds only tokd's files, or is already 0700, is used.
func TestOpenRefusesASharedStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lib")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(dir, store.Options{Key: testKey(1)})
	if err == nil || !strings.Contains(err.Error(), `"dpkg"`) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Open of a shared loose directory = %v, want an error naming it and \"dpkg\"", err)
	}
	checkMode(t, dir, 0o755|os.ModeDir)
	if _, err := os.Stat(filepath.Join(dir, store.DBFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a refused directory created %s: %v", store.DBFileName, err)
	}

	// Already 0700: the operator chose it; nothing is changed, so nothing
	// is refused.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir, testKey(1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Only tokd's own files (and a mount's lost+found): tightened as before.
	own := filepath.Join(t.TempDir(), "tokd")
	s = openStore(t, own, testKey(1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lost+found", store.DBFileName + ".corrupt-20260101T000000Z"} {
		if err := os.WriteFile(filepath.Join(own, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(own, 0o755); err != nil {
		t.Fatal(err)
	}
	openStore(t, own, testKey(1))
	checkMode(t, own, 0o700|os.ModeDir)
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

func TestOpenRejectsBadKey(t *testing.T) {
	tests := []struct {
		name string
		key  []byte
	}{
		{name: "nil", key: nil},
		{name: "AES-128 size", key: make([]byte, 16)},
		{name: "one byte too long", key: make([]byte, 33)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := store.Open(dir, store.Options{Key: tt.key})
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			want := fmt.Sprintf("open store: sealing key is %d bytes, want 32", len(tt.key))
			if err.Error() != want {
				t.Errorf("Open error = %q, want %q", err, want)
			}
		})
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testKey(1))
	if err := s.Put(sampleRecord("p")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	updateRaw(t, s.Path(), func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("1000"))
	})
	before, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	s2, err := store.Open(dir, store.Options{Key: testKey(1), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil {
		_ = s2.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !errors.Is(err, store.ErrNewerSchema) {
		t.Errorf("Open error %v does not match ErrNewerSchema", err)
	}
	want := fmt.Sprintf("open store: %s: schema version 1000 is newer than 2: database was written by a newer tokd", s.Path())
	if err.Error() != want {
		t.Errorf("Open error = %q, want %q", err, want)
	}

	after, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("Open changed a database with a newer schema")
	}
	if files := corruptFiles(t, dir); len(files) != 0 {
		t.Errorf("Open moved a database with a newer schema aside: %v", files)
	}
	if logs.Len() != 0 {
		t.Errorf("unexpected log output: %s", logs.String())
	}
}
