package config

import (
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(minimal))
	f.Add([]byte("[profiles.a]\ngrant_type = \"import\"\n"))
	f.Add([]byte("[profiles.ci]\nallowed_uids = [-1]\n[profiles.ci.assertion]\nlifetime = 5\n"))
	f.Add([]byte("socket = \"x\"\n[profiles.\"a b\".docker]\nregistries = [\"https://X/\"]\n"))
	f.Add([]byte("[profiles.ci]\nscopes = [\"urn:opc:resource:consumer::all\", \"https://a/b\", \"urn:opc:idm:x\"]\n"))
	f.Add([]byte("a = [1, {b = 2}]\n[[profiles]]\n"))
	// An empty file system keeps the fuzzer off the real one; a few files
	// let it reach the parsers.
	k := testKeys()
	fsys := memFS(map[string]string{
		"/etc/tokd/ci.secret":   "secret\n",
		"/etc/tokd/ci-user.pem": k.userPKCS8,
		"/etc/tokd/ci-user.crt": k.userCert,
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, warnings, err := Parse(data, Options{FS: fsys, BaseDir: "/etc/tokd"})
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("empty error text (%T)", err)
			}
			if cfg != nil {
				t.Fatalf("config returned with error")
			}
			return
		}
		if cfg == nil || len(cfg.Profiles) == 0 {
			t.Fatalf("no config or no profile without an error")
		}
		for _, w := range warnings {
			if w.String() == "" {
				t.Fatalf("empty warning")
			}
		}
		for _, p := range cfg.Profiles {
			if p.Fingerprint() == "" {
				t.Fatalf("empty fingerprint")
			}
		}
	})
}

// FuzzFileContents feeds arbitrary bytes to the parsers of secret, key,
// certificate and CA files, which FuzzParse rarely reaches.
func FuzzFileContents(f *testing.F) {
	k := testKeys()
	for _, seed := range []string{k.userPKCS8, k.userPKCS1, k.userCert, k.ec, k.small, k.encrypted,
		"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "secret\r\n", ""} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if key, msg := parseRSAKey(data); (key == nil) == (msg == "") {
			t.Fatalf("parseRSAKey: key %v with message %q", key != nil, msg)
		}
		if cert, msg := parseCert(data); (cert == nil) == (msg == "") {
			t.Fatalf("parseCert: cert %v with message %q", cert != nil, msg)
		}
		if pool, msg := parseCAs(data); (pool == nil) == (msg == "") {
			t.Fatalf("parseCAs: pool %v with message %q", pool != nil, msg)
		}
		if secret, msg := parseSecret(data); (secret == "") == (msg == "") {
			t.Fatalf("parseSecret: secret %q with message %q", secret, msg)
		}
	})
}
