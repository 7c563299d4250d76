// Package store persists tokd's cached OAuth2 token records, sealed with
// AES-256-GCM, in a bbolt database in the state directory.
//
// # Files
//
// The state directory is created if missing and its mode is forced to 0700,
// unless it holds files that are not tokd's (it is then refused, not
// tightened, since something else uses it):
//
//	STATE_DIR/                       0700
//	├── tokd.db                      0600  bbolt database, see below
//	├── tokd.key                     0600  generated sealing key (hex), only
//	│                                      when no $CREDENTIALS_DIRECTORY/tokd.key
//	└── tokd.db.corrupt-<UTC time>         a damaged tokd.db moved aside by Open
//
// # Bucket tree (schema version 2)
//
//	meta/                        bucket
//	│   schema_version           decimal ASCII, e.g. "2"
//	tokens/                      bucket
//	    <profile name>           JSON record value, one per profile
//
// Version 1, the initial schema, kept the records in a bucket called
// profiles/ instead of tokens/. Migrations are listed in migrations.go; the
// index of each entry is the schema version it migrates to. Open runs every
// pending migration in one write transaction, so a database is never left
// half migrated, and refuses a database whose schema version is newer than
// the one this package knows (ErrNewerSchema) without touching it.
//
// # Record values
//
// A record value is a JSON object. Only the token fields are secret:
//
//	{
//	  "v": 1,                          record format version
//	  "token_type": "Bearer",
//	  "access_token": "<base64>",      sealed
//	  "refresh_token": "<base64>",     sealed; absent when there is none
//	  "scope": "read write",
//	  "issued_at": "2025-01-02T03:04:05.123456789Z",
//	  "expiry": "2025-01-02T04:04:05.123456789Z",
//	  "fingerprint": "sha256:..."
//	}
//
// A sealed field is nonce (12 random bytes) || ciphertext || GCM tag. Its
// additional data binds it to the profile name (the bbolt key), to the field
// name, and to every clear field of the record, so a sealed token cannot be
// moved to another profile or field and the clear fields cannot be edited
// without the record failing to open. A record that fails to open is
// reported for that profile alone (RecordError); the other records load.
//
// # Durability and damage
//
// Each Put and Delete returns after the fsynced bbolt write transaction
// that holds it has committed. Puts called together share one transaction
// (group commit, see Put); each Delete is a transaction of its own. Open
// holds bbolt's file lock for the life of the Store and gives up after
// Options.Timeout, so a second tokd on the same state directory fails
// with ErrLocked. If tokd.db cannot be read as a tokd database, Open renames
// it to tokd.db.corrupt-<UTC time>, logs that at level ERROR, and starts with
// an empty database: every record in it is a cache entry that can be fetched
// again.
package store
