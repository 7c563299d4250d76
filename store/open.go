package store

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// File modes the store enforces.
const (
	stateDirMode fs.FileMode = 0o700
	dbFileMode   fs.FileMode = 0o600
)

// errCorrupt is wrapped by errors that mean tokd.db is damaged or is not a
// tokd database.
var errCorrupt = errors.New("database is damaged")

// errLockTimeout is bbolt's error for a lock that was not released in time.
var errLockTimeout = berrors.ErrTimeout

// corruptError reports a damaged database file. It wraps errCorrupt.
type corruptError struct {
	err error
	// file describes the damaged file as it was opened, so that Open moves
	// aside that file and not one created since by another process.
	file fs.FileInfo
}

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

// openDB opens the bbolt database at path, waiting at most timeout for its
// lock, reads every page to find damage now rather than in a later request,
// and returns it with its schema version. A lock timeout is reported as
// errLockTimeout, and damage as a *corruptError.
func openDB(path string, timeout time.Duration) (*bolt.DB, int, error) {
	var (
		file *os.File
		info fs.FileInfo
	)
	opts := &bolt.Options{
		Timeout: timeout,
		// openFile keeps the file so that it can be closed if bbolt panics
		// in Open, and forces the mode, which bbolt sets only on creation.
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			if err != nil {
				return nil, err
			}
			fi, err := f.Stat()
			if err == nil {
				err = f.Chmod(dbFileMode)
			}
			if err != nil {
				_ = f.Close()
				return nil, err
			}
			file, info = f, fi
			return f, nil
		},
	}

	var db *bolt.DB
	err := catchFaults(func() error {
		var err error
		db, err = bolt.Open(path, dbFileMode, opts)
		return err
	})
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return nil, 0, errLockTimeout
	case errors.Is(err, errCorrupt):
		// bbolt panicked inside Open and never closed the file, which
		// also holds the lock.
		if db == nil && file != nil {
			_ = file.Close()
		}
		return nil, 0, &corruptError{err: err, file: info}
	case isBoltDamage(err):
		return nil, 0, &corruptError{err: fmt.Errorf("%w: %w", errCorrupt, err), file: info}
	default:
		return nil, 0, err
	}

	var version int
	err = catchFaults(func() error {
		return db.View(func(tx *bolt.Tx) error {
			fi, err := file.Stat()
			if err != nil {
				return err
			}
			if need := tx.Size(); fi.Size() < need {
				return fmt.Errorf("%w: file is %d bytes but its pages end at %d (truncated?)", errCorrupt, fi.Size(), need)
			}
			if err := readEveryValue(tx); err != nil {
				return err
			}
			version, err = readSchemaVersion(tx)
			if err != nil {
				return err
			}
			return checkCurrentSchema(tx, version)
		})
	})
	if err != nil {
		// A panic above unwound through View, which rolled the
		// transaction back, so Close does not block.
		_ = db.Close()
		if errors.Is(err, errCorrupt) {
			return nil, 0, &corruptError{err: err, file: info}
		}
		return nil, 0, err
	}
	return db, version, nil
}

// isBoltDamage reports whether err from bolt.Open means the file is not a
// readable bbolt database, as opposed to, say, a permission problem.
func isBoltDamage(err error) bool {
	return errors.Is(err, berrors.ErrInvalid) ||
		errors.Is(err, berrors.ErrChecksum) ||
		errors.Is(err, berrors.ErrVersionMismatch) ||
		// bbolt has no sentinel for a file shorter than its two meta
		// pages; TestOpenMovesDamagedDatabaseAside covers this message.
		strings.Contains(err.Error(), "file size too small")
}

// catchFaults runs fn and turns a panic, or a memory fault in fn's
// goroutine, into an error wrapping errCorrupt. bbolt reads the file through
// a memory map and trusts what it finds: a damaged file makes it panic, and
// a truncated one makes it fault on pages past the end of the file.
func catchFaults(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt panicked: %v", errCorrupt, r)
		}
	}()
	return fn()
}

// readEveryValue reads every key and value in tx, so that a damaged page
// fails now, inside catchFaults, rather than later in a request.
func readEveryValue(tx *bolt.Tx) error {
	var sum uint32
	var visit func(b *bolt.Bucket) error
	visit = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			sum = crc32.Update(sum, crc32.IEEETable, k)
			sum = crc32.Update(sum, crc32.IEEETable, v)
			if v == nil {
				if child := b.Bucket(k); child != nil {
					return visit(child)
				}
			}
			return nil
		})
	}
	return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return visit(b) })
}

// ensureStateDir creates dir if it does not exist and sets its mode to
// 0700 whatever it was, unless dir holds files that are not tokd's: then
// it is not tokd's own directory (state_dir = "/var/lib", a home
// directory), and tightening its mode would break whatever else uses it,
// so ensureStateDir refuses it, naming one such file.
func ensureStateDir(dir string) error {
	if dir == "" {
		return errors.New("no state directory given")
	}
	if err := os.MkdirAll(dir, stateDirMode); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if fi.Mode().Perm() == stateDirMode {
		return nil // nothing to change, even on a read-only file system
	}
	if other, err := foreignEntry(dir); err != nil {
		return fmt.Errorf("state directory: %w", err)
	} else if other != "" {
		return fmt.Errorf("state directory %s (mode %04o) also holds %q, which is not tokd's: "+
			"give tokd a directory of its own, which it keeps at mode 0700", dir, fi.Mode().Perm(), other)
	}
	if err := os.Chmod(dir, stateDirMode); err != nil {
		return fmt.Errorf("set state directory mode: %w", err)
	}
	return nil
}

// foreignEntry returns the name of an entry of dir that tokd did not put
// there, or "" when every entry is one of tokd's: tokd.db, tokd.key, a
// damaged database moved aside, or a key file being written (and the
// lost+found of a file system mounted there).
func foreignEntry(dir string) (string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(64)
		for _, name := range names {
			switch {
			case name == DBFileName, name == KeyFileName, name == "lost+found",
				strings.HasPrefix(name, DBFileName+".corrupt-"),
				strings.HasPrefix(name, "."+KeyFileName+"-"):
			default:
				return name, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
	}
}

// moveAside renames the damaged database at path to
// path.corrupt-<UTC time> and returns the new name. It returns "" if path
// no longer names the damaged file, because another process has already
// moved it or replaced it.
func moveAside(path string, damaged fs.FileInfo) (string, error) {
	current, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if damaged != nil && !os.SameFile(current, damaged) {
		return "", nil
	}
	base := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
	aside := base
	for n := 2; ; n++ {
		_, err := os.Lstat(aside)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return "", err
		}
		aside = fmt.Sprintf("%s.%d", base, n)
	}
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return aside, err
	}
	return aside, nil
}

// syncDir flushes the directory entries of dir to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if closeErr := d.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
