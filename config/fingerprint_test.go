package config

import (
	"regexp"
	"testing"
)

func TestFingerprint(t *testing.T) {
	base := mustParse(t, minimal, exampleOptions()).Profiles["ci"].Fingerprint()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(base) {
		t.Fatalf("Fingerprint() = %q, want 64 hex digits", base)
	}
	if again := mustParse(t, minimal, exampleOptions()).Profiles["ci"].Fingerprint(); again != base {
		t.Errorf("fingerprint not stable: %s then %s", base, again)
	}

	withFiles := func(files map[string]string) Options {
		all := exampleFiles()
		for p, d := range files {
			all[p] = d
		}
		return Options{FS: memFS(all)}
	}
	k := testKeys()
	tests := []struct {
		name string
		data string
		opts Options
		same bool
	}{
		{name: "access control", same: true,
			data: edit(minimal, `scopes =`, "allowed_uids = [1000, 0]\nallowed_gids = [10]\nscopes =")},
		{name: "git and docker", same: true,
			data: minimal + "[profiles.ci.git]\nurls = [\"https://git.example.com/\"]\n[profiles.ci.docker]\nregistries = [\"registry.example.com\"]\n"},
		{name: "timeout and ca_file", same: true,
			data: edit(minimal, `scopes =`, "timeout = \"10s\"\nca_file = \"/etc/tokd/ca.pem\"\nscopes =")},
		{name: "defaults written out", same: true,
			data: edit(minimal, `scopes =`, "grant_type = \"jwt-bearer\"\ntoken_url = \"https://idcs-0123.identity.oraclecloud.com/oauth2/v1/token\"\nscopes =",
				`key_id = "ci-cert"`, "key_id = \"ci-cert\"\nlifetime = \"5m\"\naudience = [\"https://identity.oraclecloud.com/\", \"https://idcs-0123.identity.oraclecloud.com/\"]")},
		{name: "rotated client secret", same: true, data: minimal,
			opts: withFiles(map[string]string{"/etc/tokd/ci.secret": "rotated-secret\n"})},
		{name: "same key, PKCS#1 instead of PKCS#8", same: true, data: minimal,
			opts: withFiles(map[string]string{"/etc/tokd/ci-user.pem": k.userPKCS1})},
		{name: "other profile name", same: true, data: edit(minimal, "profiles.ci]", "profiles.renamed]", "profiles.ci.assertion", "profiles.renamed.assertion")},

		{name: "scopes", data: edit(minimal, `"urn:opc:idm:__myscopes__"]`, `"urn:opc:idm:role.Viewer"]`)},
		{name: "token_url", data: edit(minimal, `scopes =`, "token_url = \"https://idcs-0123.identity.oraclecloud.com/oauth2/v2/token\"\nscopes =")},
		{name: "domain_url", data: edit(minimal, "idcs-0123", "idcs-4567")},
		{name: "client_id", data: edit(minimal, `client_id = "3f1e"`, `client_id = "9a8b"`)},
		{name: "refresh_token", data: edit(minimal, `scopes =`, "refresh_token = true\nscopes =")},
		{name: "subject", data: edit(minimal, `subject = "ci-bot"`, `subject = "deploy-bot"`)},
		{name: "audience", data: edit(minimal, `key_id = "ci-cert"`, "key_id = \"ci-cert\"\naudience = [\"https://identity.oraclecloud.com/\"]")},
		{name: "lifetime", data: edit(minimal, `key_id = "ci-cert"`, "key_id = \"ci-cert\"\nlifetime = \"10m\"")},
		{name: "key_id", data: edit(minimal, `key_id = "ci-cert"`, `key_id = "ci-cert-2"`)},
		{name: "x5t instead of kid", data: edit(minimal, `key_id = "ci-cert"`, `cert_file = "/etc/tokd/ci-user.crt"`)},
		{name: "user key", data: minimal,
			opts: withFiles(map[string]string{"/etc/tokd/ci-user.pem": k.otherPKCS8})},
		{name: "client assertion instead of secret",
			data: edit(minimal, `client_secret_file = "/etc/tokd/ci.secret"`, "client_key_file = \"/etc/tokd/other.pem\"\nclient_key_id = \"c\"")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.FS == nil {
				opts = exampleOptions()
			}
			cfg := mustParse(t, tt.data, opts)
			got := cfg.Profiles[cfg.ProfileNames()[0]].Fingerprint()
			if tt.same && got != base {
				t.Errorf("fingerprint changed: %s, want %s", got, base)
			}
			if !tt.same && got == base {
				t.Errorf("fingerprint did not change")
			}
		})
	}

	t.Run("scope order", func(t *testing.T) {
		one := edit(minimal, `scopes = ["urn:opc:idm:__myscopes__"]`, `scopes = ["offline_access", "urn:opc:idm:__myscopes__"]`)
		two := edit(minimal, `scopes = ["urn:opc:idm:__myscopes__"]`, `scopes = ["urn:opc:idm:__myscopes__", "offline_access"]`)
		a := mustParse(t, one, exampleOptions()).Profiles["ci"].Fingerprint()
		b := mustParse(t, two, exampleOptions()).Profiles["ci"].Fingerprint()
		if a != b {
			t.Errorf("reordering scopes changed the fingerprint")
		}
	})

	t.Run("client key", func(t *testing.T) {
		data := edit(minimal, `client_secret_file = "/etc/tokd/ci.secret"`, "client_key_file = \"/etc/tokd/other.pem\"\nclient_key_id = \"c\"")
		a := mustParse(t, data, exampleOptions()).Profiles["ci"].Fingerprint()
		b := mustParse(t, edit(data, "other.pem", "pkcs1.pem"), exampleOptions()).Profiles["ci"].Fingerprint()
		if a == b {
			t.Errorf("another client key gave the same fingerprint")
		}
	})
}
