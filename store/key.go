package store

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyFileName is the name of the sealing key file, both in the systemd
// credentials directory and in the state directory.
const KeyFileName = "tokd.key"

// maxKeyFileSize bounds how much of a key file LoadKey reads.
const maxKeyFileSize = 4096

// KeySource says where LoadKey found the sealing key. Its values are short
// words suitable for a log attribute.
type KeySource string

const (
	// KeyFromCredentials is $CREDENTIALS_DIRECTORY/tokd.key, a systemd
	// credential.
	KeyFromCredentials KeySource = "credentials"
	// KeyFromStateDir is a tokd.key that already existed in the state
	// directory.
	KeyFromStateDir KeySource = "state-dir"
	// KeyGenerated is a tokd.key that LoadKey has just generated in the
	// state directory.
	KeyGenerated KeySource = "generated"
)

// LoadKey returns the sealing key for the store in stateDir and says where
// it came from.
//
// If credentialsDir is not empty and holds tokd.key, the key comes from
// there; the daemon passes os.Getenv("CREDENTIALS_DIRECTORY"). Otherwise it
// comes from tokd.key in stateDir, which LoadKey generates on first use:
// 32 random bytes written in hex to a new file of mode 0600, linked into
// place so that the name appears only with its full contents and never
// replaces an existing key. LoadKey creates stateDir if needed and forces
// its mode to 0700.
//
// A key file holds 32 raw bytes, 64 hex digits, or the base64 of 32 bytes,
// optionally followed by a newline. Anything else is an error naming the
// file, and so are 32 raw bytes that are all printable ASCII: they are a
// shorter key in hex or base64 (openssl rand -hex 16), or a passphrase,
// not 256 random bits, and a random key is all printable with odds of
// about 1 in 10^14. A tokd.key in stateDir that is accessible by group or others is an
// error rather than something LoadKey fixes: the key may already have been
// copied, and whether to keep it is the operator's decision. The mode of a
// credential is left to systemd.
func LoadKey(stateDir, credentialsDir string) (key []byte, source KeySource, err error) {
	if credentialsDir != "" {
		key, err := readKeyFile(filepath.Join(credentialsDir, KeyFileName), false)
		if err == nil {
			return key, KeyFromCredentials, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("load key: %w", err)
		}
	}

	if err := ensureStateDir(stateDir); err != nil {
		return nil, "", fmt.Errorf("load key: %w", err)
	}
	path := filepath.Join(stateDir, KeyFileName)
	key, err = readKeyFile(path, true)
	if err == nil {
		return key, KeyFromStateDir, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("load key: %w", err)
	}
	key, err = generateKeyFile(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process generated the key first; use theirs.
		key, err = readKeyFile(path, true)
		if err != nil {
			return nil, "", fmt.Errorf("load key: %w", err)
		}
		return key, KeyFromStateDir, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("load key: %w", err)
	}
	return key, KeyGenerated, nil
}

// readKeyFile reads and parses the key file at path. If private is set, the
// file must not be accessible by group or others.
func readKeyFile(path string, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); private && perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o and is accessible by group or others: "+
			"run chmod 600 %s, or delete it and %s to start over with a new key",
			path, perm, path, DBFileName)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize))
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

// parseKey decodes the contents of a key file: KeySize raw bytes that are
// not all printable text, or their hex or base64 encoding, optionally
// followed by a newline. Its errors never contain the data.
func parseKey(data []byte) ([]byte, error) {
	if len(data) == KeySize && !isPrintable(data) {
		return bytes.Clone(data), nil
	}
	text := bytes.TrimSuffix(data, []byte("\n"))
	if len(text) == KeySize && !isPrintable(text) {
		return bytes.Clone(text), nil
	}
	// A text editor may have ended a hex or base64 line with CRLF.
	text = bytes.TrimSuffix(text, []byte("\r"))
	if len(text) == 2*KeySize {
		if key, err := hex.DecodeString(string(text)); err == nil {
			return key, nil
		}
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		if key, err := enc.DecodeString(string(text)); err == nil && len(key) == KeySize {
			return key, nil
		}
	}
	what := fmt.Sprintf("%d bytes are not a key", len(data))
	if len(text) == KeySize && isPrintable(text) {
		what = fmt.Sprintf("%d characters of text are not %d random bytes (a shorter key in hex or base64, or a passphrase?)",
			len(text), KeySize)
	}
	return nil, fmt.Errorf("%s: want %d raw bytes, %d hex digits, or base64 of %d bytes, "+
		"optionally followed by a newline", what, KeySize, 2*KeySize, KeySize)
}

// isPrintable reports whether b is all printable ASCII, spaces included.
func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// generateKeyFile writes a new random key to path and returns it. The error
// wraps fs.ErrExist if path already exists.
func generateKeyFile(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	dir := filepath.Dir(path)
	// CreateTemp opens with O_EXCL and mode 0600.
	tmp, err := os.CreateTemp(dir, "."+KeyFileName+"-*")
	if err != nil {
		return nil, fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return nil, fmt.Errorf("write key file: %w", err)
	}
	// Link, unlike Rename, fails if path exists.
	if err := os.Link(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("create key file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return key, nil
}
