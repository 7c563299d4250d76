package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/tokd/tokd/store"
)

// fillStore writes enough records in dir to span many pages and returns
// them.
func fillStore(t *testing.T, dir string) []store.Record {
	t.Helper()
	s := openStore(t, dir, testKey(1))
	var records []store.Record
	for i := range 60 {
		r := sampleRecord(fmt.Sprintf("profile-%03d", i))
		r.AccessToken += strings.Repeat("x", 3000)
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
		records = append(records, r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return records
}

// pagesEnd returns the offset where the pages of the bbolt file at path end.
func pagesEnd(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	if err := db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	return size
}

// freelistOffset returns the offset of the freelist page of the bbolt file
// at path.
func freelistOffset(t *testing.T, path string) int64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var offset int64
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; int64(id)*int64(db.Info().PageSize) < tx.Size(); id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p != nil && p.Type == "freelist" {
				offset = int64(id) * int64(db.Info().PageSize)
				return nil
			}
		}
		return errors.New("no freelist page")
	})
	if err != nil {
		t.Fatal(err)
	}
	return offset
}

func TestOpenMovesDamagedDatabaseAside(t *testing.T) {
	page := int64(os.Getpagesize())
	truncate := func(size func(end int64) int64) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.Truncate(path, size(pagesEnd(t, path))); err != nil {
				t.Fatal(err)
			}
		}
	}
	replace := func(data []byte) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, path string)
		// wantReason is part of the logged reason.
		wantReason string
	}{
		{
			name:       "garbage bytes",
			damage:     replace(bytes.Repeat([]byte("this is not a bbolt database\n"), 3000)),
			wantReason: "database is damaged: invalid database",
		},
		{
			name:       "a few garbage bytes",
			damage:     replace([]byte("garbage")),
			wantReason: "database is damaged: invalid database",
		},
		{
			name: "meta pages zeroed",
			damage: func(t *testing.T, path string) {
				f, err := os.OpenFile(path, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteAt(make([]byte, 2*page), 0); err != nil {
					t.Fatal(err)
				}
			},
			wantReason: "database is damaged: invalid database",
		},
		{
			name:       "truncated inside the second meta page",
			damage:     truncate(func(int64) int64 { return page + 100 }),
			wantReason: "database is damaged: file size too small",
		},
		{
			name:       "truncated to the meta pages",
			damage:     truncate(func(int64) int64 { return 2 * page }),
			wantReason: "database is damaged",
		},
		{
			name:       "truncated to half",
			damage:     truncate(func(end int64) int64 { return end / 2 }),
			wantReason: "database is damaged",
		},
		{
			name:       "last page cut off",
			damage:     truncate(func(end int64) int64 { return end - page }),
			wantReason: "database is damaged",
		},
		{
			// Open itself then faults reading the freelist page from the
			// part of the memory map past the end of the file.
			name: "truncated at the freelist page",
			damage: func(t *testing.T, path string) {
				if err := os.Truncate(path, freelistOffset(t, path)); err != nil {
					t.Fatal(err)
				}
			},
			wantReason: "database is damaged: bbolt panicked",
		},
		{
			name: "not a tokd database",
			damage: func(t *testing.T, path string) {
				updateRaw(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("meta")) })
			},
			wantReason: "database is damaged: buckets but no meta bucket",
		},
		{
			name: "unreadable schema version",
			damage: func(t *testing.T, path string) {
				updateRaw(t, path, func(tx *bolt.Tx) error {
					return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), []byte("two"))
				})
			},
			wantReason: `database is damaged: bad meta/schema_version`,
		},
		{
			name: "no tokens bucket",
			damage: func(t *testing.T, path string) {
				updateRaw(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("tokens")) })
			},
			wantReason: "database is damaged: schema version 2 but no tokens bucket",
		},
		{
			name: "tokens is not a bucket",
			damage: func(t *testing.T, path string) {
				updateRaw(t, path, func(tx *bolt.Tx) error {
					if err := tx.DeleteBucket([]byte("tokens")); err != nil {
						return err
					}
					return tx.Bucket([]byte("meta")).Put([]byte("tokens"), []byte("x"))
				})
			},
			wantReason: "database is damaged: schema version 2 but no tokens bucket",
		},
	}
	asideName := regexp.MustCompile(`^tokd\.db\.corrupt-\d{8}T\d{6}Z$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			records := fillStore(t, dir)
			path := filepath.Join(dir, store.DBFileName)
			tt.damage(t, path)
			damaged, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			var logs bytes.Buffer
			s, err := store.Open(dir, store.Options{Key: testKey(1), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("Open of a damaged database: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })

			good, bad, err := s.LoadAll()
			if err != nil || len(good) != 0 || len(bad) != 0 {
				t.Errorf("LoadAll on the new database = %d records, %v, %v; want none", len(good), bad, err)
			}
			if err := s.Put(sampleRecord("after")); err != nil {
				t.Errorf("Put on the new database: %v", err)
			}
			checkMode(t, path, 0o600)

			files := corruptFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("files moved aside = %v, want one", files)
			}
			if !asideName.MatchString(filepath.Base(files[0])) {
				t.Errorf("moved aside to %s, want a name matching %s", files[0], asideName)
			}
			aside, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(aside, damaged) {
				t.Errorf("the file moved aside is not the damaged database")
			}

			line := logs.String()
			for _, want := range []string{
				"level=ERROR",
				"database is damaged; moved it aside and starting with an empty one",
				"path=" + path,
				"moved_to=" + files[0],
				tt.wantReason,
			} {
				if !strings.Contains(line, want) {
					t.Errorf("log %q does not contain %q", line, want)
				}
			}
			for _, r := range records[:3] {
				if strings.Contains(line, r.AccessToken) || strings.Contains(line, r.RefreshToken) {
					t.Errorf("log contains a token")
				}
			}
		})
	}
}

func TestOpenKeepsEveryDamagedDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, store.DBFileName)
	for i := range 3 {
		if err := os.WriteFile(path, []byte(fmt.Sprintf("garbage %d", i)), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := store.Open(dir, store.Options{Key: testKey(1)})
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var contents []string
	for _, f := range corruptFiles(t, dir) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		contents = append(contents, string(b))
	}
	if len(contents) != 3 {
		t.Fatalf("kept %d damaged databases (%q), want 3", len(contents), contents)
	}
	for i := range 3 {
		if !slices.Contains(contents, fmt.Sprintf("garbage %d", i)) {
			t.Errorf("damaged database %d was not kept; kept %q", i, contents)
		}
	}
}
