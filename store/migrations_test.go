package store

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

var testSealKey = bytes.Repeat([]byte{9}, KeySize)

// v1Record returns a record and its sealed value, as schema version 1 stored
// it.
func v1Record(t *testing.T, profile string) (Record, []byte) {
	t.Helper()
	s, err := newSealer(testSealKey)
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	r := Record{
		Profile:      profile,
		TokenType:    "Bearer",
		AccessToken:  "access-" + profile,
		RefreshToken: "refresh-" + profile,
		Scope:        "read",
		IssuedAt:     issued,
		Expiry:       issued.Add(time.Hour),
		Fingerprint:  "fp-" + profile,
	}
	v, err := s.seal(r)
	if err != nil {
		t.Fatal(err)
	}
	return r, v
}

// buildV1 fills tx with a schema version 1 database holding records.
func buildV1(t *testing.T, tx *bolt.Tx, records map[string][]byte) {
	t.Helper()
	if err := migrate(tx, 0, 1); err != nil {
		t.Fatal(err)
	}
	b := tx.Bucket(bucketProfilesV1)
	for p, v := range records {
		if err := b.Put([]byte(p), v); err != nil {
			t.Fatal(err)
		}
	}
}

// tempDB returns a new bbolt database that is closed when the test ends.
func tempDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// bucketNames returns the names of the top-level buckets of tx.
func bucketNames(tx *bolt.Tx) []string {
	var names []string
	_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, string(name))
		return nil
	})
	return names
}

func TestMigrationListIsIndexedByVersion(t *testing.T) {
	if migrations[0].apply != nil {
		t.Errorf("migrations[0] is set; index 0 is the empty database and must stay unused")
	}
	for v := 1; v < len(migrations); v++ {
		if migrations[v].apply == nil || migrations[v].name == "" {
			t.Errorf("migrations[%d] has no apply function or name", v)
		}
	}
	if schemaVersion != len(migrations)-1 || schemaVersion != 2 {
		t.Errorf("schemaVersion = %d with %d migrations", schemaVersion, len(migrations)-1)
	}
}

func TestMigrations(t *testing.T) {
	alice, aliceValue := v1Record(t, "alice")
	bob, bobValue := v1Record(t, "bob")

	tests := []struct {
		// to is the version the migration under test migrates to.
		to int
		// setup builds a database at version to-1.
		setup func(t *testing.T, tx *bolt.Tx)
		// check inspects the database after the migration.
		check func(t *testing.T, tx *bolt.Tx)
	}{
		{
			to:    1,
			setup: func(*testing.T, *bolt.Tx) {},
			check: func(t *testing.T, tx *bolt.Tx) {
				if diff := cmp.Diff([]string{"meta", "profiles"}, bucketNames(tx)); diff != "" {
					t.Errorf("buckets (-want +got):\n%s", diff)
				}
				if n := tx.Bucket(bucketProfilesV1).Stats().KeyN; n != 0 {
					t.Errorf("profiles holds %d keys, want 0", n)
				}
			},
		},
		{
			to: 2,
			setup: func(t *testing.T, tx *bolt.Tx) {
				buildV1(t, tx, map[string][]byte{"alice": aliceValue, "bob": bobValue})
			},
			check: func(t *testing.T, tx *bolt.Tx) {
				if diff := cmp.Diff([]string{"meta", "tokens"}, bucketNames(tx)); diff != "" {
					t.Errorf("buckets (-want +got):\n%s", diff)
				}
				s, err := newSealer(testSealKey)
				if err != nil {
					t.Fatal(err)
				}
				tokens := tx.Bucket(bucketTokens)
				for _, want := range []Record{alice, bob} {
					v := tokens.Get([]byte(want.Profile))
					if !bytes.Equal(v, map[string][]byte{"alice": aliceValue, "bob": bobValue}[want.Profile]) {
						t.Errorf("tokens/%s is not the v1 value unchanged", want.Profile)
					}
					got, err := s.open(want.Profile, v)
					if err != nil {
						t.Errorf("open tokens/%s: %v", want.Profile, err)
						continue
					}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("tokens/%s (-want +got):\n%s", want.Profile, diff)
					}
				}
			},
		},
	}
	tested := map[int]bool{}
	for _, tt := range tests {
		tested[tt.to] = true
		t.Run(migrations[tt.to].name, func(t *testing.T) {
			db := tempDB(t, filepath.Join(t.TempDir(), "test.db"))
			err := db.Update(func(tx *bolt.Tx) error {
				tt.setup(t, tx)
				return migrate(tx, tt.to-1, tt.to)
			})
			if err != nil {
				t.Fatalf("migrate to %d: %v", tt.to, err)
			}
			err = db.View(func(tx *bolt.Tx) error {
				v, err := readSchemaVersion(tx)
				if err != nil || v != tt.to {
					t.Errorf("schema version after migration = %d, %v; want %d", v, err, tt.to)
				}
				tt.check(t, tx)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	for v := 1; v < len(migrations); v++ {
		if !tested[v] {
			t.Errorf("migration to version %d (%s) has no test case", v, migrations[v].name)
		}
	}
}

func TestOpenMigratesV1Database(t *testing.T) {
	dir := t.TempDir()
	alice, aliceValue := v1Record(t, "alice")
	db := tempDB(t, filepath.Join(dir, DBFileName))
	err := db.Update(func(tx *bolt.Tx) error {
		buildV1(t, tx, map[string][]byte{"alice": aliceValue})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(dir, Options{Key: testSealKey})
	if err != nil {
		t.Fatalf("Open of a v1 database: %v", err)
	}
	got, err := s.Get("alice")
	if err != nil {
		t.Fatalf("Get(alice): %v", err)
	}
	if diff := cmp.Diff(alice, got); diff != "" {
		t.Errorf("Get(alice) (-want +got):\n%s", diff)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if v, err := readSchemaVersion(tx); v != schemaVersion || err != nil {
			t.Errorf("schema version = %d, %v; want %d", v, err, schemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFailedMigrationChangesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DBFileName)
	db := tempDB(t, path)
	err := db.Update(func(tx *bolt.Tx) error {
		buildV1(t, tx, nil)
		// migrateToV2 refuses a nested bucket among the records.
		_, err := tx.Bucket(bucketProfilesV1).CreateBucket([]byte("stray"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = Open(dir, Options{Key: testSealKey})
	want := "open store: " + path + `: migrate schema to version 2 (move records from profiles to tokens): copy records: unexpected bucket "stray" in profiles`
	if err == nil || err.Error() != want {
		t.Fatalf("Open = %v, want %q", err, want)
	}

	db = tempDB(t, path)
	err = db.View(func(tx *bolt.Tx) error {
		if v, err := readSchemaVersion(tx); v != 1 || err != nil {
			t.Errorf("schema version = %d, %v; want 1", v, err)
		}
		if diff := cmp.Diff([]string{"meta", "profiles"}, bucketNames(tx)); diff != "" {
			t.Errorf("buckets (-want +got):\n%s", diff)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMigrateRefusesDowngrade(t *testing.T) {
	db := tempDB(t, filepath.Join(t.TempDir(), "test.db"))
	err := db.Update(func(tx *bolt.Tx) error { return migrate(tx, 3, 2) })
	if err == nil || !strings.Contains(err.Error(), "cannot migrate from schema version 3 down to 2") {
		t.Errorf("migrate(3, 2) = %v", err)
	}
}
