package config

import (
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// sharingProfile returns a jwt-bearer profile whose user key, certificate
// and CA file are the given files.
func sharingProfile(name, keyFile, certFile, caFile string) string {
	return fmt.Sprintf(`
[profiles.%s]
domain_url = "https://idcs-0123.identity.oraclecloud.com"
client_id = "3f1e"
client_secret_file = "/etc/tokd/ci.secret"
scopes = ["urn:opc:resource:%s"]
ca_file = %q

[profiles.%s.assertion]
subject = "ci-bot"
key_file = %q
cert_file = %q
`, name, name, caFile, name, keyFile, certFile)
}

// openCounter is a file system that counts the opens of each file; a
// Stat is not an open.
type openCounter struct {
	fs.FS
	mu    sync.Mutex
	opens map[string]int
}

func (c *openCounter) Open(name string) (fs.File, error) {
	c.mu.Lock()
	c.opens[name]++
	c.mu.Unlock()
	return c.FS.Open(name)
}

func (c *openCounter) Stat(name string) (fs.FileInfo, error) { return fs.Stat(c.FS, name) }

// TestSharedFilesParsedOnce checks that profiles naming one key,
// certificate or CA file share what was parsed from it (the same
// *rsa.PrivateKey, the same *x509.CertPool), that files with other
// contents are parsed on their own, and that each file is read once.
func TestSharedFilesParsedOnce(t *testing.T) {
	k := testKeys()
	files := exampleFiles()
	files["/etc/tokd/ca2.pem"] = k.otherCert
	counter := &openCounter{FS: memFS(files), opens: map[string]int{}}
	data := sharingProfile("a", "/etc/tokd/ci-user.pem", "/etc/tokd/ci-user.crt", "/etc/tokd/ca.pem") +
		sharingProfile("b", "/etc/tokd/ci-user.pem", "/etc/tokd/ci-user.crt", "/etc/tokd/ca.pem") +
		sharingProfile("c", "/etc/tokd/other.pem", "/etc/tokd/other.crt", "/etc/tokd/ca2.pem")
	cfg := mustParse(t, data, Options{FS: counter})
	a, b, c := cfg.Profiles["a"].Creds, cfg.Profiles["b"].Creds, cfg.Profiles["c"].Creds

	if a.UserKey == nil || a.UserKey != b.UserKey {
		t.Errorf("profiles a and b name one key file but hold different keys (%p, %p)", a.UserKey, b.UserKey)
	}
	if a.RootCAs == nil || a.RootCAs != b.RootCAs {
		t.Errorf("profiles a and b name one ca_file but hold different pools (%p, %p)", a.RootCAs, b.RootCAs)
	}
	if a.UserX5T == "" || a.UserX5T != b.UserX5T {
		t.Errorf("x5t: a %q, b %q", a.UserX5T, b.UserX5T)
	}
	if c.UserKey == nil || c.UserKey == a.UserKey || !c.UserKey.Equal(k.other) || !a.UserKey.Equal(k.user) {
		t.Errorf("profile c's key was not parsed from its own file")
	}
	if c.RootCAs == nil || c.RootCAs == a.RootCAs || c.RootCAs.Equal(a.RootCAs) {
		t.Errorf("profile c's ca_file was not parsed on its own")
	}
	if c.UserX5T == "" || c.UserX5T == a.UserX5T {
		t.Errorf("x5t: c %q, a %q", c.UserX5T, a.UserX5T)
	}

	want := map[string]int{
		"etc/tokd/ci.secret":   1,
		"etc/tokd/ci-user.pem": 1, "etc/tokd/ci-user.crt": 1, "etc/tokd/ca.pem": 1,
		"etc/tokd/other.pem": 1, "etc/tokd/other.crt": 1, "etc/tokd/ca2.pem": 1,
	}
	if diff := cmp.Diff(want, counter.opens); diff != "" {
		t.Errorf("opens per file (-want +got):\n%s", diff)
	}
}

// TestSharedFileProblemsPerProfile checks that a key file shared by
// several profiles gives each of them its problem, and its warning, as if
// each had read and parsed the file itself.
func TestSharedFileProblemsPerProfile(t *testing.T) {
	k := testKeys()
	tests := []struct {
		name     string
		file     string // "" for none
		mode     fs.FileMode
		wantErr  string // every problem's message, after the path
		wantWarn string // every warning's message, after the path
	}{
		{name: "small key", file: k.small, mode: 0o600, wantErr: "holds a 1024-bit RSA key; at least 2048 bits are needed"},
		{name: "EC key", file: k.ec, mode: 0o600, wantErr: "holds an ECDSA key; RS256 needs an RSA key"},
		{name: "not a key", file: "hello\n", mode: 0o600, wantErr: "holds no PEM private key (-----BEGIN PRIVATE KEY-----)"},
		{name: "missing", wantErr: "does not exist"},
		{name: "directory", mode: fs.ModeDir | 0o700, wantErr: "is a directory, not a file"},
		{name: "too large", file: strings.Repeat("a", maxKeySize+1), mode: 0o600, wantErr: fmt.Sprintf("is larger than %d bytes", maxKeySize)},
		{name: "readable key", file: k.userPKCS8, mode: 0o644, wantWarn: "is readable by group or others (mode 0644); chmod 600 it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := memFS(exampleFiles())
			if tt.mode != 0 {
				fsys["etc/tokd/shared.pem"] = &fstest.MapFile{Data: []byte(tt.file), Mode: tt.mode}
			}
			var data strings.Builder
			names := []string{"a", "b", "c"}
			for _, n := range names {
				data.WriteString(sharingProfile(n, "/etc/tokd/shared.pem", "/etc/tokd/ci-user.crt", "/etc/tokd/ca.pem"))
			}
			_, warnings, err := Parse([]byte(data.String()), Options{FS: fsys})

			var wantProblems, gotProblems []Problem
			if tt.wantErr != "" {
				for _, n := range names {
					wantProblems = append(wantProblems, Problem{
						Key: "profiles." + n + ".assertion.key_file",
						Msg: "/etc/tokd/shared.pem " + tt.wantErr,
					})
				}
				ve, ok := err.(*ValidationError)
				if !ok {
					t.Fatalf("Parse: %v, want a *ValidationError", err)
				}
				gotProblems = ve.Problems
			} else if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(wantProblems, gotProblems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}

			var wantWarnings []Warning
			if tt.wantWarn != "" {
				for _, n := range names {
					wantWarnings = append(wantWarnings, Warning{
						Key: "profiles." + n + ".assertion.key_file",
						Msg: "/etc/tokd/shared.pem " + tt.wantWarn,
					})
				}
			}
			if diff := cmp.Diff(wantWarnings, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// BenchmarkParseSharedKey parses a configuration of 100 profiles that
// name one key file, the case the memo of parsed files is for.
func BenchmarkParseSharedKey(b *testing.B) {
	var data strings.Builder
	for i := range 100 {
		data.WriteString(sharingProfile(fmt.Sprintf("p%03d", i), "/etc/tokd/ci-user.pem", "/etc/tokd/ci-user.crt", "/etc/tokd/ca.pem"))
	}
	opts := exampleOptions()
	for b.Loop() {
		if _, _, err := Parse([]byte(data.String()), opts); err != nil {
			b.Fatal(err)
		}
	}
}
