package store

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// Bucket and key names of the schema drawn in the package comment.
var (
	bucketMeta       = []byte("meta")
	keySchemaVersion = []byte("schema_version")
	bucketTokens     = []byte("tokens")

	// bucketProfilesV1 held the records in schema version 1.
	bucketProfilesV1 = []byte("profiles")
)

// A migration moves a database from the previous schema version to the next.
type migration struct {
	// name says what the migration does, for the log.
	name string
	// apply changes the buckets. It runs inside the write transaction that
	// also records the new schema version.
	apply func(tx *bolt.Tx) error
}

// migrations lists every migration in order. The index of an entry is the
// schema version it migrates to; index 0 is unused because version 0 is the
// empty database.
var migrations = []migration{
	1: {name: "create meta and profiles buckets", apply: migrateToV1},
	2: {name: "move records from profiles to tokens", apply: migrateToV2},
}

// schemaVersion is the schema version this package reads and writes.
var schemaVersion = len(migrations) - 1

// migrateToV1 creates the initial schema in an empty database.
func migrateToV1(tx *bolt.Tx) error {
	if _, err := tx.CreateBucket(bucketMeta); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketMeta, err)
	}
	if _, err := tx.CreateBucket(bucketProfilesV1); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketProfilesV1, err)
	}
	return nil
}

// migrateToV2 moves every record from profiles/ to tokens/, unchanged, and
// deletes profiles/. The values need no rewriting: the sealed fields are
// bound to the profile name, which stays the key.
func migrateToV2(tx *bolt.Tx) error {
	old := tx.Bucket(bucketProfilesV1)
	if old == nil {
		return fmt.Errorf("bucket %s is missing", bucketProfilesV1)
	}
	tokens, err := tx.CreateBucket(bucketTokens)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketTokens, err)
	}
	err = old.ForEach(func(k, v []byte) error {
		if v == nil {
			return fmt.Errorf("unexpected bucket %q in %s", k, bucketProfilesV1)
		}
		// The copies keep tokens/ independent of the pages that
		// DeleteBucket frees below.
		return tokens.Put(bytes.Clone(k), bytes.Clone(v))
	})
	if err != nil {
		return fmt.Errorf("copy records: %w", err)
	}
	if err := tx.DeleteBucket(bucketProfilesV1); err != nil {
		return fmt.Errorf("delete bucket %s: %w", bucketProfilesV1, err)
	}
	return nil
}

// errStopIteration ends a ForEach early.
var errStopIteration = errors.New("stop iteration")

// readSchemaVersion returns the schema version recorded in tx, or 0 for an
// empty database. A database that has buckets but no readable version is
// not a tokd database, and the error wraps errCorrupt.
func readSchemaVersion(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		err := tx.ForEach(func([]byte, *bolt.Bucket) error {
			empty = false
			return errStopIteration
		})
		if err != nil && !errors.Is(err, errStopIteration) {
			return 0, err
		}
		if empty {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: buckets but no %s bucket", errCorrupt, bucketMeta)
	}
	raw := meta.Get(keySchemaVersion)
	if raw == nil {
		return 0, fmt.Errorf("%w: no %s/%s", errCorrupt, bucketMeta, keySchemaVersion)
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%w: bad %s/%s %q", errCorrupt, bucketMeta, keySchemaVersion, raw)
	}
	return v, nil
}

// checkCurrentSchema checks that a database that says it is at the current
// schema version has the bucket every Store method uses: without it, Get,
// LoadAll and Put would dereference a nil bucket. The error wraps
// errCorrupt, so that Open moves such a database aside. Other versions are
// left to migrate and to the ErrNewerSchema check.
func checkCurrentSchema(tx *bolt.Tx, version int) error {
	if version == schemaVersion && tx.Bucket(bucketTokens) == nil {
		return fmt.Errorf("%w: schema version %d but no %s bucket", errCorrupt, version, bucketTokens)
	}
	return nil
}

// writeSchemaVersion records v as the schema version of tx.
func writeSchemaVersion(tx *bolt.Tx, v int) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("bucket %s is missing", bucketMeta)
	}
	return meta.Put(keySchemaVersion, []byte(strconv.Itoa(v)))
}

// migrate brings tx from schema version from to target, running the
// migrations in order and recording each new version. The caller commits
// or rolls back tx, so either every step is kept or none is.
func migrate(tx *bolt.Tx, from, target int) error {
	if from > target {
		return fmt.Errorf("cannot migrate from schema version %d down to %d", from, target)
	}
	for v := from + 1; v <= target; v++ {
		if err := migrations[v].apply(tx); err != nil {
			return fmt.Errorf("migrate schema to version %d (%s): %w", v, migrations[v].name, err)
		}
		if err := writeSchemaVersion(tx, v); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v, err)
		}
	}
	return nil
}
