package store

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DBFileName is the name of the database file in the state directory.
const DBFileName = "tokd.db"

// DefaultLockTimeout is how long Open waits for another process to release
// the database when Options.Timeout is zero.
const DefaultLockTimeout = 200 * time.Millisecond

// ErrNotFound means no record is stored for a profile.
var ErrNotFound = errors.New("no record stored")

// ErrLocked means another process holds the database open. The error Open
// returns reads "another tokd is using STATE_DIR".
var ErrLocked = errors.New("another tokd is using the state directory")

// ErrNewerSchema means the database was written with a schema version newer
// than this package knows. Open leaves such a database untouched.
var ErrNewerSchema = errors.New("database was written by a newer tokd")

// Record is one cached token of one profile.
type Record struct {
	Profile      string
	TokenType    string
	AccessToken  string
	RefreshToken string // may be empty
	Scope        string
	IssuedAt     time.Time // absolute
	Expiry       time.Time // absolute
	Fingerprint  string    // hash of the profile settings that produced the token
}

// RecordError reports a stored record that could not be read. It wraps
// ErrUnsealFailed (wrong key or tampered data) or ErrCorruptRecord.
type RecordError struct {
	Profile string
	Err     error
}

// Error implements error. The message names the profile and never contains
// token material.
func (e *RecordError) Error() string {
	return fmt.Sprintf("record for profile %q: %v", e.Profile, e.Err)
}

// Unwrap returns the reason the record could not be read.
func (e *RecordError) Unwrap() error { return e.Err }

// lockedError is the error Open returns when the database is locked.
type lockedError struct {
	dir string
}

func (e *lockedError) Error() string { return "another tokd is using " + e.dir }

// Is reports whether target is ErrLocked.
func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// Options configure Open.
type Options struct {
	// Key is the KeySize-byte sealing key, usually from LoadKey.
	Key []byte
	// Logger receives the store's log lines, which never contain token
	// material. Nil discards them.
	Logger *slog.Logger
	// Timeout bounds the wait for the database lock. Zero or less means
	// DefaultLockTimeout.
	Timeout time.Duration
}

// Store is an open token database. Its methods are safe for concurrent use.
type Store struct {
	db     *bolt.DB
	sealer *sealer
	path   string

	// puts carries records from Put to the committer goroutine
	// (commitPuts), which ends when puts is closed.
	puts          chan *pendingPut
	committerDone chan struct{}
	// closeMu guards closed and the sends on puts, so that Close closes
	// puts after the last send.
	closeMu sync.RWMutex
	closed  bool

	queued  atomic.Int64 // Puts handed to the committer and not yet answered
	commits atomic.Int64 // transactions that committed Puts
}

// maxBatch bounds the records of one transaction and the Puts that can
// queue without blocking.
const maxBatch = 1024

// pendingPut is one Put waiting for the transaction that holds its
// record.
type pendingPut struct {
	profile string
	value   []byte
	done    chan error // receives the Put's result, once
}

// Open opens or creates the database in the state directory dir, creating
// dir if needed and forcing its mode to 0700 and the database file's to 0600.
//
// If another process has the database open, Open fails after opts.Timeout
// with an error matching ErrLocked. If the file is not a readable tokd
// database, Open moves it aside, logs that, and continues with an empty one.
// If the schema version is newer than this package knows, Open fails with
// an error matching ErrNewerSchema. Older schemas are migrated.
func Open(dir string, opts Options) (*Store, error) {
	sealer, err := newSealer(opts.Key)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	if err := ensureStateDir(dir); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	path := filepath.Join(dir, DBFileName)

	db, version, err := openDB(path, timeout)
	if damaged, ok := errors.AsType[*corruptError](err); ok {
		aside, moveErr := moveAside(path, damaged.file)
		if moveErr != nil {
			return nil, fmt.Errorf("open store: %w; moving it aside: %w", err, moveErr)
		}
		if aside != "" {
			logger.Error("database is damaged; moved it aside and starting with an empty one",
				"path", path, "moved_to", aside, "err", err)
		}
		db, version, err = openDB(path, timeout)
	}
	if errors.Is(err, errLockTimeout) {
		return nil, &lockedError{dir: dir}
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// Make a newly created tokd.db survive a crash.
	if err := syncDir(dir); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}

	if version > schemaVersion {
		_ = db.Close()
		return nil, fmt.Errorf("open store: %s: schema version %d is newer than %d: %w",
			path, version, schemaVersion, ErrNewerSchema)
	}
	if version < schemaVersion {
		err := db.Update(func(tx *bolt.Tx) error {
			return migrate(tx, version, schemaVersion)
		})
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("open store: %s: %w", path, err)
		}
		if version == 0 {
			logger.Info("created database", "path", path, "schema_version", schemaVersion)
		} else {
			logger.Info("migrated database schema", "path", path, "from_version", version, "to_version", schemaVersion)
		}
	}
	s := &Store{
		db: db, sealer: sealer, path: path,
		puts:          make(chan *pendingPut, maxBatch),
		committerDone: make(chan struct{}),
	}
	go s.commitPuts()
	return s, nil
}

// Path returns the path of the database file.
func (s *Store) Path() string { return s.path }

// Close waits for the Puts under way, closes the database and releases its
// lock. A Put after Close fails.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if !s.closed {
		s.closed = true
		close(s.puts)
	}
	s.closeMu.Unlock()
	<-s.committerDone
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Put stores r under r.Profile, replacing any record there, and returns
// once a fsynced transaction holding it has committed.
//
// Puts called while a transaction is being written wait and are then
// committed together, in the order they were called, in one transaction
// (group commit): a burst of refreshes costs a few fsyncs rather than two
// per token, and a lone Put costs one transaction as before, with no
// delay waiting for company. When a shared transaction fails, each of its
// records is tried again in a transaction of its own, so that every Put
// gets its own error.
func (s *Store) Put(r Record) error {
	if r.Profile == "" {
		return errors.New("put record: empty profile name")
	}
	if r.AccessToken == "" {
		return fmt.Errorf("put record for profile %q: empty access token", r.Profile)
	}
	v, err := s.sealer.seal(r)
	if err != nil {
		return fmt.Errorf("put record for profile %q: %w", r.Profile, err)
	}
	p := &pendingPut{profile: r.Profile, value: v, done: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return fmt.Errorf("put record for profile %q: %w", r.Profile, berrors.ErrDatabaseNotOpen)
	}
	s.puts <- p
	s.queued.Add(1)
	s.closeMu.RUnlock()
	err = <-p.done
	s.queued.Add(-1)
	if err != nil {
		return fmt.Errorf("put record for profile %q: %w", r.Profile, err)
	}
	return nil
}

// commitPuts writes the records of Put: each transaction takes every
// record waiting, up to maxBatch. It returns when puts is closed and
// drained.
func (s *Store) commitPuts() {
	defer close(s.committerDone)
	batch := make([]*pendingPut, 0, maxBatch)
	for p := range s.puts {
		batch = append(batch[:0], p)
	fill:
		for len(batch) < maxBatch {
			select {
			case p, ok := <-s.puts:
				if !ok {
					break fill
				}
				batch = append(batch, p)
			default:
				break fill
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

// commit writes batch in one transaction and answers its Puts; after a
// failure it writes each record alone.
func (s *Store) commit(batch []*pendingPut) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		for _, p := range batch {
			if err := b.Put([]byte(p.profile), p.value); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case err == nil:
		s.commits.Add(1)
		for _, p := range batch {
			p.done <- nil
		}
	case len(batch) == 1:
		batch[0].done <- err
	default:
		for _, p := range batch {
			s.commit([]*pendingPut{p})
		}
	}
}

// Get returns the record of profile. The error matches ErrNotFound if there
// is none, and is a *RecordError if the stored record cannot be read.
func (s *Store) Get(profile string) (Record, error) {
	var (
		r     Record
		found bool
		err   error
	)
	viewErr := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTokens).Get([]byte(profile))
		if v == nil {
			return nil
		}
		found = true
		// open copies what it keeps, so nothing outlives the transaction.
		r, err = s.sealer.open(profile, v)
		return nil
	})
	switch {
	case viewErr != nil:
		return Record{}, fmt.Errorf("get record for profile %q: %w", profile, viewErr)
	case !found:
		return Record{}, fmt.Errorf("get record for profile %q: %w", profile, ErrNotFound)
	case err != nil:
		return Record{}, &RecordError{Profile: profile, Err: err}
	}
	return r, nil
}

// Delete removes the record of profile, in one fsynced transaction. Deleting
// a profile with no record is not an error.
func (s *Store) Delete(profile string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b.Get([]byte(profile)) == nil {
			return nil
		}
		return b.Delete([]byte(profile))
	})
	if err != nil {
		return fmt.Errorf("delete record for profile %q: %w", profile, err)
	}
	return nil
}

// LoadAll returns every record that can be read, ordered by profile name,
// and a RecordError for each one that cannot. A bad record does not stop
// the others from loading; err is for failures of the database itself.
func (s *Store) LoadAll() (records []Record, bad []*RecordError, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			profile := string(k)
			if v == nil {
				bad = append(bad, &RecordError{Profile: profile, Err: fmt.Errorf("%w: nested bucket", ErrCorruptRecord)})
				return nil
			}
			r, err := s.sealer.open(profile, v)
			if err != nil {
				bad = append(bad, &RecordError{Profile: profile, Err: err})
				return nil
			}
			records = append(records, r)
			return nil
		})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("load records: %w", err)
	}
	return records, bad, nil
}
