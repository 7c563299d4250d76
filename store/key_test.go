package store_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tokd/tokd/store"
)

// credentialKey is a key whose base64 forms use '+', '/', '-' and '_'.
var credentialKey = func() []byte {
	k := make([]byte, store.KeySize)
	for i := range k {
		k[i] = byte(0xf8 + i*37)
	}
	return k
}()

func TestLoadKeyFromCredentials(t *testing.T) {
	// crKey is a raw key whose last byte is a carriage return.
	crKey := append(bytes.Clone(credentialKey[:31]), '\r')
	tests := []struct {
		name     string
		contents []byte
		want     []byte // nil means credentialKey
	}{
		{name: "raw", contents: credentialKey},
		{name: "raw ending in CR, with newline", contents: append(bytes.Clone(crKey), '\n'), want: crKey},
		{name: "raw with newline", contents: append(bytes.Clone(credentialKey), '\n')},
		{name: "hex with newline", contents: []byte(hex.EncodeToString(credentialKey) + "\n")},
		{name: "upper-case hex", contents: []byte(strings.ToUpper(hex.EncodeToString(credentialKey)))},
		{name: "hex with CRLF", contents: []byte(hex.EncodeToString(credentialKey) + "\r\n")},
		{name: "base64 with newline", contents: []byte(base64.StdEncoding.EncodeToString(credentialKey) + "\n")},
		{name: "base64 without padding", contents: []byte(base64.RawStdEncoding.EncodeToString(credentialKey))},
		{name: "base64url", contents: []byte(base64.URLEncoding.EncodeToString(credentialKey))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stateDir, credsDir := t.TempDir(), t.TempDir()
			if err := os.WriteFile(filepath.Join(credsDir, store.KeyFileName), tt.contents, 0o400); err != nil {
				t.Fatal(err)
			}
			key, source, err := store.LoadKey(stateDir, credsDir)
			if err != nil {
				t.Fatalf("LoadKey: %v", err)
			}
			if source != store.KeyFromCredentials {
				t.Errorf("source = %q, want %q", source, store.KeyFromCredentials)
			}
			want := tt.want
			if want == nil {
				want = credentialKey
			}
			if !bytes.Equal(key, want) {
				t.Errorf("key = %x, want %x", key, want)
			}
			if _, err := os.Stat(filepath.Join(stateDir, store.KeyFileName)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("LoadKey wrote a key to the state directory although a credential exists")
			}
		})
	}
}

func TestLoadKeyRejectsBadKeyFiles(t *testing.T) {
	tests := []struct {
		name     string
		contents []byte
	}{
		{name: "empty", contents: nil},
		{name: "newline only", contents: []byte("\n")},
		{name: "31 raw bytes", contents: credentialKey[:31]},
		{name: "33 raw bytes", contents: append(bytes.Clone(credentialKey), 'x')},
		{name: "hex of 31 bytes", contents: []byte(hex.EncodeToString(credentialKey[:31]) + "\n")},
		{name: "64 non-hex characters", contents: []byte(strings.Repeat("z", 64))},
		{name: "base64 of 16 bytes", contents: []byte(base64.StdEncoding.EncodeToString(credentialKey[:16]) + "\n")},
		{name: "two newlines", contents: []byte(hex.EncodeToString(credentialKey) + "\n\n")},
		// 32 characters of text are not 32 random bytes: they are a
		// shorter key encoded, or a passphrase.
		{name: "hex of 16 bytes", contents: []byte(hex.EncodeToString(credentialKey[:16]) + "\n")},
		{name: "hex of 16 bytes without newline", contents: []byte(hex.EncodeToString(credentialKey[:16]))},
		{name: "base64 of 24 bytes", contents: []byte(base64.StdEncoding.EncodeToString(credentialKey[:24]) + "\n")},
		{name: "32-character passphrase", contents: []byte("correct horse battery staple 123")},
	}
	for _, tt := range tests {
		for _, where := range []string{"credentials", "state"} {
			t.Run(tt.name+" in "+where, func(t *testing.T) {
				stateDir, credsDir := t.TempDir(), t.TempDir()
				path := filepath.Join(credsDir, store.KeyFileName)
				if where == "state" {
					path = filepath.Join(stateDir, store.KeyFileName)
				}
				if err := os.WriteFile(path, tt.contents, 0o600); err != nil {
					t.Fatal(err)
				}
				_, _, err := store.LoadKey(stateDir, credsDir)
				if err == nil {
					t.Fatal("LoadKey succeeded")
				}
				want := "load key: key file " + path + ": "
				if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "want 32 raw bytes, 64 hex digits, or base64 of 32 bytes") {
					t.Errorf("LoadKey error = %q, want it to start with %q and say what a key is", err, want)
				}
			})
		}
	}
}

func TestLoadKeyGeneratesAndReuses(t *testing.T) {
	tests := []struct {
		name     string
		credsDir func(t *testing.T) string
	}{
		{name: "no credentials directory", credsDir: func(*testing.T) string { return "" }},
		{name: "credentials directory without tokd.key", credsDir: func(t *testing.T) string { return t.TempDir() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stateDir := filepath.Join(t.TempDir(), "state")
			credsDir := tt.credsDir(t)

			key, source, err := store.LoadKey(stateDir, credsDir)
			if err != nil {
				t.Fatalf("first LoadKey: %v", err)
			}
			if source != store.KeyGenerated || len(key) != store.KeySize {
				t.Errorf("first LoadKey = %d-byte key from %q, want a %d-byte key from %q", len(key), source, store.KeySize, store.KeyGenerated)
			}
			checkMode(t, stateDir, 0o700|os.ModeDir)
			path := filepath.Join(stateDir, store.KeyFileName)
			checkMode(t, path, 0o600)
			contents, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := hex.EncodeToString(key) + "\n"; string(contents) != want {
				t.Errorf("key file holds %d bytes, want the key in hex with a newline", len(contents))
			}
			entries, err := os.ReadDir(stateDir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("state directory holds %v, want only %s", entries, store.KeyFileName)
			}

			again, source, err := store.LoadKey(stateDir, credsDir)
			if err != nil {
				t.Fatalf("second LoadKey: %v", err)
			}
			if source != store.KeyFromStateDir || !bytes.Equal(again, key) {
				t.Errorf("second LoadKey = %x from %q, want the first key from %q", again, source, store.KeyFromStateDir)
			}

			// The key opens a store.
			s := openStore(t, stateDir, key)
			if err := s.Put(sampleRecord("p")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLoadKeyGeneratesDistinctKeys(t *testing.T) {
	k1, _, err := store.LoadKey(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	k2, _, err := store.LoadKey(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(k1, k2) {
		t.Errorf("two generated keys are equal")
	}
}

func TestLoadKeyPrefersCredentials(t *testing.T) {
	stateDir, credsDir := t.TempDir(), t.TempDir()
	if _, _, err := store.LoadKey(stateDir, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(credsDir, store.KeyFileName), credentialKey, 0o400); err != nil {
		t.Fatal(err)
	}
	key, source, err := store.LoadKey(stateDir, credsDir)
	if err != nil {
		t.Fatal(err)
	}
	if source != store.KeyFromCredentials || !bytes.Equal(key, credentialKey) {
		t.Errorf("LoadKey = %x from %q, want the credential", key, source)
	}
}

func TestLoadKeyChecksStateKeyMode(t *testing.T) {
	tests := []struct {
		name    string
		mode    os.FileMode
		wantErr bool
	}{
		{name: "owner read-write", mode: 0o600},
		{name: "owner read-only", mode: 0o400},
		{name: "group readable", mode: 0o640, wantErr: true},
		{name: "world readable", mode: 0o644, wantErr: true},
		{name: "group writable", mode: 0o620, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stateDir := t.TempDir()
			want, _, err := store.LoadKey(stateDir, "")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(stateDir, store.KeyFileName)
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}

			key, source, err := store.LoadKey(stateDir, "")
			if !tt.wantErr {
				if err != nil || source != store.KeyFromStateDir || !bytes.Equal(key, want) {
					t.Errorf("LoadKey = %x, %q, %v; want the stored key", key, source, err)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadKey accepted a key file accessible by group or others")
			}
			wantErr := "load key: key file " + path + " has mode " + fmt.Sprintf("%04o", tt.mode) +
				" and is accessible by group or others: run chmod 600 " + path +
				", or delete it and tokd.db to start over with a new key"
			if diff := cmp.Diff(wantErr, err.Error()); diff != "" {
				t.Errorf("LoadKey error (-want +got):\n%s", diff)
			}
			checkMode(t, path, tt.mode)
		})
	}
}
