package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// minimal is the smallest valid configuration; test cases edit it.
const minimal = `
[profiles.ci]
domain_url = "https://idcs-0123.identity.oraclecloud.com"
client_id = "3f1e"
client_secret_file = "/etc/tokd/ci.secret"
scopes = ["urn:opc:idm:__myscopes__"]

[profiles.ci.assertion]
subject = "ci-bot"
key_file = "/etc/tokd/ci-user.pem"
key_id = "ci-cert"
`

var ignoreCreds = cmpopts.IgnoreFields(Profile{}, "Creds")

func TestExample(t *testing.T) {
	cfg, warnings, err := Load("testdata/example.toml", exampleOptions())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	want := &Config{
		Socket:         "/run/tokd/tokd.sock",
		StateDir:       "/var/lib/tokd",
		MetricsAddress: "127.0.0.1:9464",
		Profiles: map[string]*Profile{
			"ci": {
				Name:             "ci",
				DomainURL:        "https://idcs-0123.identity.oraclecloud.com",
				TokenURL:         "https://idcs-0123.identity.oraclecloud.com/oauth2/v1/token",
				ClientID:         "3f1e...",
				ClientSecretFile: "/etc/tokd/ci.secret",
				GrantType:        "jwt-bearer",
				Scopes:           []string{"urn:opc:idm:__myscopes__"},
				AllowedUIDs:      []uint32{1000},
				AllowedGIDs:      []uint32{},
				Timeout:          Duration{30 * time.Second},
				Assertion: &Assertion{
					Subject:  "ci-bot",
					KeyFile:  "/etc/tokd/ci-user.pem",
					KeyID:    "ci-cert",
					Audience: []string{"https://identity.oraclecloud.com/"},
					Lifetime: Duration{5 * time.Minute},
				},
				Git:    &Git{URLs: []string{"https://git.example.com/team/"}, Username: "oauth2"},
				Docker: &Docker{Registries: []string{"registry.example.com"}, Username: "oauth2accesstoken"},
			},
		},
	}
	if diff := cmp.Diff(want, cfg, ignoreCreds); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	creds := cfg.Profiles["ci"].Creds
	if creds.ClientSecret != testSecret {
		t.Errorf("ClientSecret = %q, want %q", creds.ClientSecret, testSecret)
	}
	if creds.UserKey == nil || !creds.UserKey.Equal(testKeys().user) {
		t.Errorf("UserKey is not the key in /etc/tokd/ci-user.pem")
	}
	if creds.ClientKey != nil || creds.RootCAs != nil || creds.UserX5T != "" || creds.ClientX5T != "" {
		t.Errorf("unexpected credentials: %v", creds)
	}
}

func TestDefaults(t *testing.T) {
	data := edit(minimal,
		`domain_url = "https://idcs-0123.identity.oraclecloud.com"`, `domain_url = "https://IDCS-0123.identity.oraclecloud.com/"`,
		`key_id = "ci-cert"`, `cert_file = "/etc/tokd/ci-user.crt"`,
	) + `
[profiles.ci.git]
urls = ["https://Git.Example.com/team/"]

[profiles.ci.docker]
registries = ["https://Registry.Example.com/", "registry.example.com:5000"]
`
	cfg := mustParse(t, data, exampleOptions())
	p := cfg.Profiles["ci"]
	want := &Profile{
		Name:             "ci",
		DomainURL:        "https://idcs-0123.identity.oraclecloud.com",
		TokenURL:         "https://idcs-0123.identity.oraclecloud.com/oauth2/v1/token",
		ClientID:         "3f1e",
		ClientSecretFile: "/etc/tokd/ci.secret",
		GrantType:        GrantJWTBearer,
		Scopes:           []string{"urn:opc:idm:__myscopes__"},
		Timeout:          Duration{DefaultTimeout},
		Assertion: &Assertion{
			Subject:  "ci-bot",
			KeyFile:  "/etc/tokd/ci-user.pem",
			CertFile: "/etc/tokd/ci-user.crt",
			Audience: []string{"https://idcs-0123.identity.oraclecloud.com/", "https://identity.oraclecloud.com/"},
			Lifetime: Duration{DefaultLifetime},
		},
		Git:    &Git{URLs: []string{"https://git.example.com/team/"}, Username: DefaultGitUsername},
		Docker: &Docker{Registries: []string{"registry.example.com", "registry.example.com:5000"}, Username: DefaultDockerUsername},
	}
	if diff := cmp.Diff(want, p, ignoreCreds); diff != "" {
		t.Errorf("profile (-want +got):\n%s", diff)
	}
	if p.Creds.UserX5T == "" || len(p.Creds.UserX5T) != 27 || strings.ContainsAny(p.Creds.UserX5T, "+/=") {
		t.Errorf("UserX5T = %q, want 27 base64url characters", p.Creds.UserX5T)
	}
}

func TestValid(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		check func(t *testing.T, p *Profile)
	}{
		{
			name: "client assertion with kid and PKCS#1 key",
			data: edit(minimal, `client_secret_file = "/etc/tokd/ci.secret"`,
				`client_key_file = "/etc/tokd/pkcs1.pem"`+"\n"+`client_key_id = "client-cert"`),
			check: func(t *testing.T, p *Profile) {
				if !p.Creds.ClientKey.Equal(testKeys().user) || p.Creds.ClientSecret != "" {
					t.Errorf("credentials: %v", p.Creds)
				}
			},
		},
		{
			name: "client assertion with x5t",
			data: edit(minimal, `client_secret_file = "/etc/tokd/ci.secret"`,
				`client_key_file = "/etc/tokd/other.pem"`+"\n"+`client_cert_file = "/etc/tokd/other.crt"`),
			check: func(t *testing.T, p *Profile) {
				if p.Creds.ClientX5T == "" {
					t.Errorf("no client x5t")
				}
			},
		},
		{
			name: "client credentials",
			data: `
[profiles.cc]
domain_url = "https://idcs-0123.identity.oraclecloud.com"
client_id = "3f1e"
client_secret_file = "/etc/tokd/ci.secret"
grant_type = "client_credentials"
scopes = ["https://api.example.com/read", "https://API.example.com/write", "urn:opc:resource:expiry=600"]
`,
			check: func(t *testing.T, p *Profile) {
				if p.Assertion != nil || p.GrantType != GrantClientCredentials {
					t.Errorf("profile: %+v", p)
				}
			},
		},
		{
			name: "import without client authentication or URL",
			data: "[profiles.imported]\ngrant_type = \"import\"\n",
			check: func(t *testing.T, p *Profile) {
				if p.TokenURL != "" {
					t.Errorf("TokenURL = %q, want none", p.TokenURL)
				}
			},
		},
		{
			name: "import with refresh",
			data: `
[profiles.imported]
grant_type = "import"
domain_url = "https://idcs-0123.identity.oraclecloud.com"
client_id = "3f1e"
client_secret_file = "/etc/tokd/ci.secret"
refresh_token = true
scopes = ["urn:opc:idm:__myscopes__", "offline_access"]
`,
		},
		{
			name: "loopback http and explicit token_url",
			data: edit(minimal,
				`domain_url = "https://idcs-0123.identity.oraclecloud.com"`, `domain_url = "http://127.0.0.1:8080/domain/"`+"\n"+`token_url = "http://[::1]:8080/token"`),
			check: func(t *testing.T, p *Profile) {
				if p.DomainURL != "http://127.0.0.1:8080/domain" || p.TokenURL != "http://[::1]:8080/token" {
					t.Errorf("URLs: %q %q", p.DomainURL, p.TokenURL)
				}
			},
		},
		{
			name: "token_url only, explicit audience",
			data: edit(minimal,
				`domain_url = "https://idcs-0123.identity.oraclecloud.com"`, `token_url = "http://localhost:9000/oauth2/token"`,
				`key_id = "ci-cert"`, `key_id = "ci-cert"`+"\n"+`audience = ["http://localhost:9000/oauth2/token"]`),
		},
		{
			name: "consumer all with modifiers; offline_access without refresh_token",
			data: edit(minimal, `scopes = ["urn:opc:idm:__myscopes__"]`,
				`scopes = ["urn:opc:resource:consumer::all", "offline_access", "openid", "urn:opc:resource:expiry=3600"]`),
		},
		{
			name: "identity domain scopes and a URL scope on the domain's host",
			data: edit(minimal, `scopes = ["urn:opc:idm:__myscopes__"]`,
				`scopes = ["urn:opc:idm:__myscopes__", "urn:opc:idm:role.User%2520Administrator", "https://idcs-0123.identity.oraclecloud.com/admin", "custom"]`),
		},
		{
			name: "ca_file and several profiles",
			data: edit(minimal, `scopes = ["urn:opc:idm:__myscopes__"]`,
				`scopes = ["urn:opc:idm:__myscopes__"]`+"\n"+`ca_file = "/etc/tokd/ca.pem"`+"\n"+`timeout = "1m"`) +
				"\n[profiles.\"second.profile_2\"]\ngrant_type = \"import\"\n",
			check: func(t *testing.T, p *Profile) {
				if p.Creds.RootCAs == nil || p.Timeout.Duration != time.Minute {
					t.Errorf("RootCAs %v, Timeout %v", p.Creds.RootCAs, p.Timeout)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warnings, err := Parse([]byte(tt.data), exampleOptions())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(warnings) != 0 {
				t.Errorf("warnings: %v", warnings)
			}
			if tt.check != nil {
				names := cfg.ProfileNames()
				tt.check(t, cfg.Profiles[names[0]])
			}
		})
	}
}

func TestBroken(t *testing.T) {
	tests := []struct {
		name     string
		data     string
		files    map[string]string // added to exampleFiles
		wantKeys []string
		wantMsg  string // in the error text
	}{
		{
			name:     "unknown key in assertion",
			data:     edit(minimal, `key_id = "ci-cert"`, `key_id = "ci-cert"`+"\n"+`kid = "x"`),
			wantKeys: []string{"profiles.ci.assertion.kid"},
			wantMsg:  "profiles.ci.assertion.kid: unknown key",
		},
		{
			name: "unknown keys in inline tables and dotted keys",
			data: edit(minimal, `key_id = "ci-cert"`, `key_id = "ci-cert"`+"\nLifetime = \"5m\"") +
				"[profiles.ci.git]\nurls = [\"https://git.example.com/\"]\nuser.name = \"x\"\n" +
				"[profiles.ci.docker]\nregistries = [\"a.example.com\"]\nextra = {deep = 1}\n",
			wantKeys: []string{"profiles.ci.assertion.Lifetime", "profiles.ci.docker.extra", "profiles.ci.git.user.name"},
		},
		{
			name:     "unknown top-level key",
			data:     "sockets = \"/run/tokd.sock\"\n" + minimal,
			wantKeys: []string{"sockets"},
		},
		{
			name:     "unknown table is reported once",
			data:     minimal + "\n[profiles.ci.kubernetes]\ncluster = \"x\"\nnamespace = \"y\"\n",
			wantKeys: []string{"profiles.ci.kubernetes"},
		},
		{
			name:     "key in the wrong case",
			data:     edit(minimal, `client_id = "3f1e"`, `Client_ID = "3f1e"`),
			wantKeys: []string{"profiles.ci.Client_ID", "profiles.ci.client_id"},
			wantMsg:  `keys are lower case: "client_id"`,
		},
		{
			name:     "negative uid",
			data:     edit(minimal, `scopes =`, "allowed_uids = [-1]\nscopes ="),
			wantKeys: []string{"profiles.ci.allowed_uids"},
			wantMsg:  "item 1 (-1) is out of range",
		},
		{
			name:     "gid as a string",
			data:     edit(minimal, `scopes =`, "allowed_gids = [100, \"wheel\"]\nscopes ="),
			wantKeys: []string{"profiles.ci.allowed_gids"},
			wantMsg:  "item 2 is a string",
		},
		{
			name:     "lifetime without unit",
			data:     edit(minimal, `key_id = "ci-cert"`, `key_id = "ci-cert"`+"\nlifetime = 5"),
			wantKeys: []string{"profiles.ci.assertion.lifetime"},
			wantMsg:  `must be a duration string like "5m", not an integer`,
		},
		{
			name:     "lifetime string without unit names the value",
			data:     edit(minimal, `key_id = "ci-cert"`, `key_id = "ci-cert"`+"\nlifetime = \"300\""),
			wantKeys: []string{"profiles.ci.assertion.lifetime"},
			wantMsg:  `invalid duration "300"`,
		},
		{
			name:     "lifetime too long",
			data:     edit(minimal, `key_id = "ci-cert"`, `key_id = "ci-cert"`+"\nlifetime = \"2h\""),
			wantKeys: []string{"profiles.ci.assertion.lifetime"},
			wantMsg:  "between 10s and 1h",
		},
		{
			name:     "zero timeout",
			data:     edit(minimal, `scopes =`, "timeout = \"0s\"\nscopes ="),
			wantKeys: []string{"profiles.ci.timeout"},
		},
		{
			name:     "scopes as one string",
			data:     edit(minimal, `scopes = ["urn:opc:idm:__myscopes__"]`, `scopes = "urn:opc:idm:__myscopes__"`),
			wantKeys: []string{"profiles.ci.scopes"},
			wantMsg:  "must be a list of strings, not a string",
		},
		{
			name:     "no profiles",
			data:     "socket = \"/run/tokd/tokd.sock\"\n",
			wantKeys: []string{"profiles"},
		},
		{
			name:     "profile is not a table",
			data:     "[profiles]\nci = 5\n",
			wantKeys: []string{"profiles.ci"},
		},
		{
			name:     "assertion is not a table",
			data:     "[profiles.ci]\nassertion = \"ci-bot\"\nclient_id = \"x\"\nclient_secret_file = \"/etc/tokd/ci.secret\"\ndomain_url = \"https://a.example.com\"\n",
			wantKeys: []string{"profiles.ci.assertion"},
			wantMsg:  "must be a table, not a string",
		},
		{
			name:     "bad profile name",
			data:     strings.Replace(minimal, "profiles.ci", `profiles."ci bot"`, 2),
			wantKeys: []string{`profiles."ci bot"`},
		},
		{
			name:     "relative socket, bad state_dir and metrics address",
			data:     "socket = \"tokd.sock\"\nstate_dir = \"var/lib/tokd\"\nmetrics_address = \"9464\"\n" + minimal,
			wantKeys: []string{"metrics_address", "socket", "state_dir"},
		},
		{
			name:     "socket path too long",
			data:     "socket = \"/run/" + strings.Repeat("x", 110) + "\"\n" + minimal,
			wantKeys: []string{"socket"},
			wantMsg:  "at most 107",
		},
		{
			name:     "http domain_url on a public host",
			data:     edit(minimal, "https://idcs-0123", "http://idcs-0123"),
			wantKeys: []string{"profiles.ci.domain_url"},
			wantMsg:  "http is allowed only for loopback hosts",
		},
		{
			name:     "domain_url with query",
			data:     edit(minimal, ".oraclecloud.com\"", ".oraclecloud.com/?x=1\""),
			wantKeys: []string{"profiles.ci.domain_url"},
			wantMsg:  "query",
		},
		{
			name:     "domain_url relative",
			data:     edit(minimal, "https://idcs-0123.identity.oraclecloud.com", "idcs-0123.identity.oraclecloud.com"),
			wantKeys: []string{"profiles.ci.domain_url"},
		},
		{
			name:     "missing domain_url",
			data:     edit(minimal, `domain_url = "https://idcs-0123.identity.oraclecloud.com"`, ""),
			wantKeys: []string{"profiles.ci.assertion.audience", "profiles.ci.domain_url"},
		},
		{
			name:     "token_url with ftp scheme",
			data:     edit(minimal, `client_id =`, "token_url = \"ftp://idcs-0123.identity.oraclecloud.com/t\"\nclient_id ="),
			wantKeys: []string{"profiles.ci.token_url"},
		},
		{
			name:     "unknown grant type",
			data:     edit(minimal, `scopes =`, "grant_type = \"password\"\nscopes ="),
			wantKeys: []string{"profiles.ci.grant_type"},
		},
		{
			name:     "missing client_id",
			data:     edit(minimal, `client_id = "3f1e"`, ""),
			wantKeys: []string{"profiles.ci.client_id"},
		},
		{
			name:     "no client authentication",
			data:     edit(minimal, `client_secret_file = "/etc/tokd/ci.secret"`, ""),
			wantKeys: []string{"profiles.ci.client_secret_file"},
		},
		{
			name:     "secret and key both",
			data:     edit(minimal, `scopes =`, "client_key_file = \"/etc/tokd/other.pem\"\nclient_key_id = \"c\"\nscopes ="),
			wantKeys: []string{"profiles.ci.client_key_file"},
		},
		{
			name: "client key without kid or cert",
			data: edit(minimal, `client_secret_file = "/etc/tokd/ci.secret"`,
				`client_key_file = "/etc/tokd/other.pem"`),
			wantKeys: []string{"profiles.ci.client_key_id"},
		},
		{
			name:     "client cert without client key",
			data:     edit(minimal, `scopes =`, "client_cert_file = \"/etc/tokd/other.crt\"\nscopes ="),
			wantKeys: []string{"profiles.ci.client_cert_file"},
		},
		{
			name: "client cert does not match client key",
			data: edit(minimal, `client_secret_file = "/etc/tokd/ci.secret"`,
				`client_key_file = "/etc/tokd/other.pem"`+"\n"+`client_cert_file = "/etc/tokd/ci-user.crt"`),
			wantKeys: []string{"profiles.ci.client_cert_file"},
			wantMsg:  "does not match client_key_file",
		},
		{
			name:     "jwt-bearer without assertion",
			data:     minimal[:strings.Index(minimal, "[profiles.ci.assertion]")],
			wantKeys: []string{"profiles.ci.assertion"},
		},
		{
			name:     "assertion with client_credentials",
			data:     edit(minimal, `scopes =`, "grant_type = \"client_credentials\"\nscopes ="),
			wantKeys: []string{"profiles.ci.assertion"},
			wantMsg:  `only used with grant_type = "jwt-bearer"`,
		},
		{
			name: "refresh_token with client_credentials",
			data: "[profiles.cc]\ndomain_url = \"https://a.example.com\"\nclient_id = \"x\"\n" +
				"client_secret_file = \"/etc/tokd/ci.secret\"\ngrant_type = \"client_credentials\"\nrefresh_token = true\n",
			wantKeys: []string{"profiles.cc.refresh_token"},
			wantMsg:  "RFC 6749 §4.4.3",
		},
		{
			name:     "import refresh without client authentication",
			data:     "[profiles.imp]\ngrant_type = \"import\"\nrefresh_token = true\ndomain_url = \"https://a.example.com\"\n",
			wantKeys: []string{"profiles.imp.client_secret_file"},
		},
		{
			name:     "assertion without subject, key_file and key id",
			data:     minimal[:strings.Index(minimal, "subject")] + "audience = []\n",
			wantKeys: []string{"profiles.ci.assertion.audience", "profiles.ci.assertion.key_file", "profiles.ci.assertion.key_id", "profiles.ci.assertion.subject"},
		},
		{
			name:     "multiresourcescope",
			data:     edit(minimal, `"urn:opc:idm:__myscopes__"]`, `"urn:opc:idm:__myscopes__", "urn:opc:resource:multiresourcescope"]`),
			wantKeys: []string{"profiles.ci.scopes"},
			wantMsg:  "tokenResponses",
		},
		{
			name:     "scopes of two resource servers",
			data:     edit(minimal, `"urn:opc:idm:__myscopes__"]`, `"urn:opc:idm:__myscopes__", "https://api.example.com/read"]`),
			wantKeys: []string{"profiles.ci.scopes"},
			wantMsg:  "use one profile per resource server",
		},
		{
			name:     "consumer all with another scope",
			data:     edit(minimal, `"urn:opc:idm:__myscopes__"]`, `"urn:opc:idm:__myscopes__", "urn:opc:resource:consumer::all"]`),
			wantKeys: []string{"profiles.ci.scopes"},
			wantMsg:  "cannot be combined",
		},
		{
			name:     "scopes as one space-separated string",
			data:     edit(minimal, `"urn:opc:idm:__myscopes__"]`, `"urn:opc:idm:__myscopes__ offline_access"]`),
			wantKeys: []string{"profiles.ci.scopes"},
			wantMsg:  "whitespace",
		},
		{
			name:     "missing key file",
			data:     edit(minimal, "ci-user.pem", "missing.pem"),
			wantKeys: []string{"profiles.ci.assertion.key_file"},
			wantMsg:  "/etc/tokd/missing.pem does not exist",
		},
		{
			name:     "EC key",
			data:     edit(minimal, "ci-user.pem", "ec.pem"),
			wantKeys: []string{"profiles.ci.assertion.key_file"},
			wantMsg:  "RS256 needs an RSA key",
		},
		{
			name:     "1024-bit key",
			data:     edit(minimal, "ci-user.pem", "small.pem"),
			wantKeys: []string{"profiles.ci.assertion.key_file"},
			wantMsg:  "1024-bit",
		},
		{
			name:     "encrypted key",
			data:     edit(minimal, "ci-user.pem", "encrypted.pem"),
			wantKeys: []string{"profiles.ci.assertion.key_file"},
			wantMsg:  "encrypted",
		},
		{
			name:     "certificate instead of key",
			data:     edit(minimal, "ci-user.pem", "cert-only.pem"),
			wantKeys: []string{"profiles.ci.assertion.key_file"},
			wantMsg:  "no private key, only CERTIFICATE",
		},
		{
			name:     "assertion cert does not match key",
			data:     edit(minimal, `key_id = "ci-cert"`, `cert_file = "/etc/tokd/other.crt"`),
			wantKeys: []string{"profiles.ci.assertion.cert_file"},
			wantMsg:  "does not match key_file",
		},
		{
			name:     "empty secret",
			data:     edit(minimal, "ci.secret", "empty.secret"),
			wantKeys: []string{"profiles.ci.client_secret_file"},
			wantMsg:  "/etc/tokd/empty.secret is empty",
		},
		{
			name:     "secret file is a directory",
			data:     edit(minimal, "/etc/tokd/ci.secret", "/etc/tokd"),
			wantKeys: []string{"profiles.ci.client_secret_file"},
			wantMsg:  "is a directory",
		},
		{
			name:     "ca_file without certificates",
			data:     edit(minimal, `scopes =`, "ca_file = \"/etc/tokd/not-ca.pem\"\nscopes ="),
			wantKeys: []string{"profiles.ci.ca_file"},
		},
		{
			name:     "git URL without scheme and empty docker registries",
			data:     minimal + "\n[profiles.ci.git]\nurls = [\"git.example.com/team\"]\n[profiles.ci.docker]\nregistries = []\n",
			wantKeys: []string{"profiles.ci.docker.registries", "profiles.ci.git.urls"},
		},
		{
			name:     "docker registry with a path",
			data:     minimal + "\n[profiles.ci.docker]\nregistries = [\"registry.example.com/team/image\"]\n",
			wantKeys: []string{"profiles.ci.docker.registries"},
		},
		{
			name: "registry claimed by two profiles",
			data: minimal + "\n[profiles.ci.docker]\nregistries = [\"registry.example.com\"]\n" +
				"[profiles.other]\ngrant_type = \"import\"\n[profiles.other.docker]\nregistries = [\"https://REGISTRY.example.com/\"]\n",
			wantKeys: []string{"profiles.other.docker.registries"},
			wantMsg:  "also claimed by profiles.ci",
		},
		{
			name:     "secret file too large",
			data:     edit(minimal, "ci.secret", "big.secret"),
			files:    map[string]string{"/etc/tokd/big.secret": strings.Repeat("a", 70000)},
			wantKeys: []string{"profiles.ci.client_secret_file"},
			wantMsg:  "/etc/tokd/big.secret is larger than",
		},
		{
			name:     "secret file of two lines",
			data:     minimal,
			files:    map[string]string{"/etc/tokd/ci.secret": testSecret + "\nsecond\n"},
			wantKeys: []string{"profiles.ci.client_secret_file"},
			wantMsg:  "more than one line",
		},
		{
			name:     "two keys in one file",
			data:     edit(minimal, "ci-user.pem", "two.pem"),
			files:    map[string]string{"/etc/tokd/two.pem": testKeys().userPKCS8 + testKeys().otherPKCS8},
			wantKeys: []string{"profiles.ci.assertion.key_file"},
			wantMsg:  "more than one private key",
		},
		{
			name:     "garbage key",
			data:     edit(minimal, "ci-user.pem", "garbage.pem"),
			files:    map[string]string{"/etc/tokd/garbage.pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
			wantKeys: []string{"profiles.ci.assertion.key_file"},
			wantMsg:  "cannot be parsed",
		},
		{
			name:     "control character in client_id",
			data:     edit(minimal, `client_id = "3f1e"`, `client_id = "3f1e\u0007"`),
			wantKeys: []string{"profiles.ci.client_id"},
		},
		{
			name: "git URL claimed by two profiles",
			data: minimal + "\n[profiles.ci.git]\nurls = [\"https://git.example.com/team/\"]\n" +
				"[profiles.other]\ngrant_type = \"import\"\n[profiles.other.git]\nurls = [\"https://GIT.example.com/team/\"]\n",
			wantKeys: []string{"profiles.other.git.urls"},
			wantMsg:  "https://git.example.com/team/ is also claimed by profiles.ci",
		},
		{
			name: "git URL claimed twice, once with its default port",
			data: minimal + "\n[profiles.ci.git]\nurls = [\"https://git.example.com/team/\"]\n" +
				"[profiles.other]\ngrant_type = \"import\"\n[profiles.other.git]\nurls = [\"https://git.example.com:443/team/\"]\n",
			wantKeys: []string{"profiles.other.git.urls"},
			wantMsg:  "is also claimed by profiles.ci",
		},
		{
			name: "every problem is reported",
			data: `
socket = "relative.sock"

[profiles.ci]
domain_url = "http://example.com"
client_id = "3f1e"
client_secret_file = "/etc/tokd/missing.secret"
grant_type = "jwt-bearer"
scopes = ["urn:opc:resource:multiresourcescope"]
allowed_uids = [-5]
timeout = "1h"

[profiles.ci.assertion]
subject = "ci-bot"
key_file = "/etc/tokd/ec.pem"
key_id = "ci-cert"
kid = "typo"
lifetime = "1s"

[profiles."bad/name"]
grant_type = "import"
`,
			wantKeys: []string{
				"profiles.\"bad/name\"",
				"profiles.ci.allowed_uids",
				"profiles.ci.assertion.key_file",
				"profiles.ci.assertion.kid",
				"profiles.ci.assertion.lifetime",
				"profiles.ci.client_secret_file",
				"profiles.ci.domain_url",
				"profiles.ci.scopes",
				"profiles.ci.timeout",
				"socket",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := exampleFiles()
			for p, d := range tt.files {
				files[p] = d
			}
			cfg, _, err := Parse([]byte(tt.data), Options{FS: memFS(files)})
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", cfg)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T, want *ValidationError: %v", err, err)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with its error")
			}
			var keys []string
			for _, p := range ve.Problems {
				keys = append(keys, p.Key)
			}
			if diff := cmp.Diff(tt.wantKeys, slices.Compact(keys)); diff != "" {
				t.Errorf("problem keys (-want +got):\n%s\nerror:\n%v", diff, err)
			}
			if !slices.IsSorted(keys) {
				t.Errorf("problems not sorted by key: %q", keys)
			}
			msg := err.Error()
			if tt.wantMsg != "" && !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error does not contain %q:\n%s", tt.wantMsg, msg)
			}
			if got := strings.Count(msg, "\n") + 1; got != len(ve.Problems) {
				t.Errorf("error has %d lines for %d problems:\n%s", got, len(ve.Problems), msg)
			}
			for _, line := range strings.Split(msg, "\n") {
				if !strings.Contains(line, ": ") {
					t.Errorf("line %q is not \"key: message\"", line)
				}
			}
			assertNoSecrets(t, msg)
		})
	}
}

// assertNoSecrets fails when s holds the test secret or key material.
func assertNoSecrets(t *testing.T, s string) {
	t.Helper()
	k := testKeys()
	for _, pemText := range []string{k.userPKCS8, k.otherPKCS8, k.ec, k.small} {
		body := strings.Split(pemText, "\n")[1] // first base64 line
		if strings.Contains(s, body) {
			t.Errorf("text holds key material: %s", s)
		}
	}
	if strings.Contains(s, testSecret) || strings.Contains(s, k.user.D.String()) {
		t.Errorf("text holds a secret: %s", s)
	}
}

func TestSyntaxError(t *testing.T) {
	data := "[profiles.ci]\ndomain_url = \"https://a.example.com\"\nclient_id = 3f1e\n"
	_, _, err := Parse([]byte(data), exampleOptions())
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("error %T, want *SyntaxError: %v", err, err)
	}
	if se.Line != 3 || se.Column < 1 {
		t.Errorf("position = line %d, column %d; want line 3", se.Line, se.Column)
	}
	if !strings.HasPrefix(err.Error(), "line 3, column ") {
		t.Errorf("error = %q", err)
	}

	path := filepath.Join(t.TempDir(), "tokd.toml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(path, exampleOptions())
	if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), path+": line 3, column ") {
		t.Errorf("Load error = %v, want one naming %s and the line", err, path)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, _, err := Load(filepath.Join(t.TempDir(), "none.toml"), Options{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error = %v, want one matching fs.ErrNotExist", err)
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		t.Errorf("a missing file gave a *ValidationError")
	}
}

func TestSecretFile(t *testing.T) {
	tests := []struct {
		name, contents, want string
	}{
		{"no newline", "s3cr+t/=&", "s3cr+t/=&"},
		{"newline from echo", "s3cr+t/=&\n", "s3cr+t/=&"},
		{"CRLF", "s3cr+t/=&\r\n", "s3cr+t/=&"},
		{"several newlines", "s3cr+t/=&\n\n", "s3cr+t/=&"},
		{"spaces kept", " a b \n", " a b "},
		{"percent and colon kept", "a%2B:b\n", "a%2B:b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := exampleFiles()
			files["/etc/tokd/ci.secret"] = tt.contents
			cfg := mustParse(t, minimal, Options{FS: memFS(files)})
			if got := cfg.Profiles["ci"].Creds.ClientSecret; got != tt.want {
				t.Errorf("secret = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRelativePaths(t *testing.T) {
	data := edit(minimal,
		`"/etc/tokd/ci.secret"`, `"ci.secret"`,
		`"/etc/tokd/ci-user.pem"`, `"keys/ci-user.pem"`)
	k := testKeys()
	tests := []struct {
		name       string
		opts       Options
		files      map[string]string
		wantSecret string
		wantKey    string
	}{
		{
			name: "credentials directory",
			opts: Options{CredentialsDirectory: "/run/credentials/tokd.service", BaseDir: "/etc/tokd"},
			files: map[string]string{
				"/run/credentials/tokd.service/ci.secret":        "from-credentials\n",
				"/run/credentials/tokd.service/keys/ci-user.pem": k.userPKCS8,
				"/etc/tokd/ci.secret":                            "from-etc\n",
			},
			wantSecret: "/run/credentials/tokd.service/ci.secret",
			wantKey:    "/run/credentials/tokd.service/keys/ci-user.pem",
		},
		{
			name: "base directory",
			opts: Options{BaseDir: "/etc/tokd"},
			files: map[string]string{
				"/etc/tokd/ci.secret":        "from-etc\n",
				"/etc/tokd/keys/ci-user.pem": k.userPKCS8,
			},
			wantSecret: "/etc/tokd/ci.secret",
			wantKey:    "/etc/tokd/keys/ci-user.pem",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.FS = memFS(tt.files)
			cfg := mustParse(t, data, tt.opts)
			p := cfg.Profiles["ci"]
			if p.ClientSecretFile != tt.wantSecret || p.Assertion.KeyFile != tt.wantKey {
				t.Errorf("paths = %q, %q; want %q, %q", p.ClientSecretFile, p.Assertion.KeyFile, tt.wantSecret, tt.wantKey)
			}
			if want := strings.TrimSuffix(tt.files[tt.wantSecret], "\n"); p.Creds.ClientSecret != want {
				t.Errorf("secret = %q, want %q", p.Creds.ClientSecret, want)
			}
		})
	}

	t.Run("missing file in the credentials directory", func(t *testing.T) {
		_, _, err := Parse([]byte(data), Options{CredentialsDirectory: "/run/credentials/tokd.service", FS: memFS(exampleFiles())})
		want := "profiles.ci.client_secret_file: /run/credentials/tokd.service/ci.secret does not exist"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to contain %q", err, want)
		}
	})

	t.Run("Load resolves against the config file's directory", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "tokd.toml"), data, 0o600)
		write(t, filepath.Join(dir, "ci.secret"), "real-file\n", 0o600)
		write(t, filepath.Join(dir, "keys", "ci-user.pem"), k.userPKCS8, 0o600)
		cfg, warnings, err := Load(filepath.Join(dir, "tokd.toml"), Options{})
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if len(warnings) != 0 {
			t.Errorf("warnings: %v", warnings)
		}
		p := cfg.Profiles["ci"]
		if p.Creds.ClientSecret != "real-file" || p.ClientSecretFile != filepath.Join(dir, "ci.secret") {
			t.Errorf("secret %q from %q", p.Creds.ClientSecret, p.ClientSecretFile)
		}
	})
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // the umask may have narrowed it
		t.Fatal(err)
	}
}

func TestFileModeWarnings(t *testing.T) {
	k := testKeys()
	tests := []struct {
		name      string
		keyMode   os.FileMode
		secMode   os.FileMode
		wantWarns []string // keys
		wantText  string
	}{
		{name: "0600 gives none", keyMode: 0o600, secMode: 0o600},
		{name: "0400 gives none", keyMode: 0o400, secMode: 0o400},
		{
			name: "0644 key", keyMode: 0o644, secMode: 0o600,
			wantWarns: []string{"profiles.ci.assertion.key_file"},
			wantText:  "ci-user.pem is readable by group or others (mode 0644); chmod 600 it",
		},
		{
			name: "0640 secret and 0604 key", keyMode: 0o604, secMode: 0o640,
			wantWarns: []string{"profiles.ci.assertion.key_file", "profiles.ci.client_secret_file"},
			wantText:  "ci.secret is readable by group or others (mode 0640)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			secret, key := filepath.Join(dir, "ci.secret"), filepath.Join(dir, "ci-user.pem")
			write(t, secret, testSecret+"\n", tt.secMode)
			write(t, key, k.userPKCS8, tt.keyMode)
			data := edit(minimal, "/etc/tokd/ci.secret", secret, "/etc/tokd/ci-user.pem", key)
			cfg, warnings, err := Parse([]byte(data), Options{})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if cfg.Profiles["ci"].Creds.ClientSecret != testSecret {
				t.Errorf("secret not read")
			}
			var keys []string
			var text []string
			for _, w := range warnings {
				keys = append(keys, w.Key)
				text = append(text, w.String())
			}
			if diff := cmp.Diff(tt.wantWarns, keys); diff != "" {
				t.Errorf("warning keys (-want +got):\n%s", diff)
			}
			joined := strings.Join(text, "\n")
			if tt.wantText != "" && !strings.Contains(joined, tt.wantText) {
				t.Errorf("warnings do not contain %q:\n%s", tt.wantText, joined)
			}
			for _, w := range warnings {
				if !strings.Contains(w.Msg, dir) {
					t.Errorf("warning %q does not name the file", w)
				}
			}
		})
	}
}

func TestCredentialsNeverPrinted(t *testing.T) {
	cfg := mustParse(t, edit(minimal, `client_secret_file = "/etc/tokd/ci.secret"`,
		`client_secret_file = "/etc/tokd/ci.secret"`+"\n"+`ca_file = "/etc/tokd/ca.pem"`), exampleOptions())
	p := cfg.Profiles["ci"]
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		s := fmt.Sprintf(verb, p) + fmt.Sprintf(verb, *p) + fmt.Sprintf(verb, p.Creds)
		if verb == "%v" || verb == "%+v" || verb == "%#v" {
			s += fmt.Sprintf(verb, cfg) + fmt.Sprintf(verb, *cfg)
		}
		assertNoSecrets(t, s)
		if strings.Contains(s, fmt.Sprintf("%x", testKeys().user.D)) {
			t.Errorf("%s prints the private exponent", verb)
		}
	}
	if got := p.Creds.String(); !strings.Contains(got, "client_secret=[redacted]") || !strings.Contains(got, "user_key=RSA-2048") {
		t.Errorf("Creds.String() = %q", got)
	}

	// encoding/json, and slog's JSON handler (tokd --log-format json),
	// do not use Format.
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("profile", "profile", p, "config", cfg)
	for _, v := range []any{p, cfg, p.Creds} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		for _, s := range []string{string(b), logged.String()} {
			assertNoSecrets(t, s)
			// JSON writes the secret's '&' as \u0026.
			if strings.Contains(s, strings.TrimSuffix(testSecret, "&")) {
				t.Errorf("JSON holds the secret: %s", s)
			}
		}
	}
	if b, _ := json.Marshal(p.Creds); !strings.Contains(string(b), "client_secret=[redacted]") {
		t.Errorf("json.Marshal(Creds) = %s, want the redacted description", b)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "5m", want: 5 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "5", wantErr: `invalid duration "5": add a unit`},
		{in: "five minutes", wantErr: `invalid duration "five minutes"`},
		{in: "", wantErr: `invalid duration ""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || d.Duration != tt.want {
				t.Errorf("= %v, %v; want %v", d.Duration, err, tt.want)
			}
			text, _ := d.MarshalText()
			var back Duration
			if err := back.UnmarshalText(text); err != nil || back != d {
				t.Errorf("round trip via %q gave %v, %v", text, back, err)
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"registry.example.com", "registry.example.com", true},
		{"Registry.Example.COM", "registry.example.com", true},
		{"registry.example.com:5000", "registry.example.com:5000", true},
		{"https://registry.example.com/", "registry.example.com", true},
		{"http://localhost:5000", "localhost:5000", true},
		{"[::1]:5000", "[::1]:5000", true},
		{"[::1]", "[::1]", true},
		{"fra.ocir.io", "fra.ocir.io", true},
		{"https://index.docker.io/", "docker.io", true},
		{"registry-1.docker.io", "docker.io", true},
		{"registry.example.com/team", "", false},
		{"ftp://registry.example.com", "", false},
		{"registry.example.com:http", "", false},
		{"registry.example.com:0", "", false},
		{"user@registry.example.com", "", false},
		{"-bad.example.com", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, msg := registry(tt.in)
			if (msg == "") != tt.ok || got != tt.want {
				t.Errorf("registry(%q) = %q, %q; want %q, ok=%v", tt.in, got, msg, tt.want, tt.ok)
			}
		})
	}
}

func TestResourceServer(t *testing.T) {
	const domain = "https://idcs-0123.identity.oraclecloud.com"
	tests := []struct{ scope, want string }{
		{"urn:opc:idm:__myscopes__", domain},
		{"urn:opc:idm:role.User%2520Administrator", domain},
		{"https://api.example.com/read", "https://api.example.com"},
		{"HTTPS://API.example.com/write", "https://api.example.com"},
		{"offline_access", ""},
		{"openid", ""},
		{"urn:opc:resource:expiry=600", ""},
		{"urn:opc:resource:consumer::all", ""},
		{"custom-scope", ""},
	}
	for _, tt := range tests {
		if got := resourceServer(tt.scope, domain); got != tt.want {
			t.Errorf("resourceServer(%q) = %q, want %q", tt.scope, got, tt.want)
		}
	}
}

func TestWritableFileWarnings(t *testing.T) {
	k := testKeys()
	tests := []struct {
		name                         string
		configMode, caMode, certMode os.FileMode
		want                         []string // warnings as "key: text", DIR for the directory
	}{
		{name: "0644 and 0600 give none", configMode: 0o644, caMode: 0o644, certMode: 0o600},
		{
			name:       "world-writable configuration",
			configMode: 0o666, caMode: 0o644, certMode: 0o644,
			want: []string{"DIR/tokd.toml is writable by group or others (mode 0666); chmod go-w it"},
		},
		{
			name:       "group-writable ca_file and world-writable cert_file",
			configMode: 0o640, caMode: 0o664, certMode: 0o602,
			want: []string{
				"profiles.ci.assertion.cert_file: DIR/ci-user.crt is writable by group or others (mode 0602); chmod go-w it",
				"profiles.ci.ca_file: DIR/ca.pem is writable by group or others (mode 0664); chmod go-w it",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "ci.secret"), testSecret+"\n", 0o600)
			write(t, filepath.Join(dir, "ci-user.pem"), k.userPKCS8, 0o600)
			write(t, filepath.Join(dir, "ci-user.crt"), k.userCert, tt.certMode)
			write(t, filepath.Join(dir, "ca.pem"), k.userCert, tt.caMode)
			data := edit(minimal,
				`client_secret_file = "/etc/tokd/ci.secret"`, `client_secret_file = "ci.secret"`+"\n"+`ca_file = "ca.pem"`,
				`key_file = "/etc/tokd/ci-user.pem"`, `key_file = "ci-user.pem"`+"\n"+`cert_file = "ci-user.crt"`)
			path := filepath.Join(dir, "tokd.toml")
			write(t, path, data, tt.configMode)
			_, warnings, err := Load(path, Options{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var got []string
			for _, w := range warnings {
				got = append(got, strings.ReplaceAll(w.String(), dir, "DIR"))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOverflowIDWarnings: 65534 in allowed_uids or allowed_gids admits
// every caller from another user namespace whose ids are not mapped into
// tokd's (they appear as the overflow id), which the configuration says
// with a warning naming the key; other ids draw none.
func TestOverflowIDWarnings(t *testing.T) {
	for _, tt := range []struct {
		access   string
		wantKeys []string
	}{
		{"allowed_uids = [1000, 65533, 65535]\nallowed_gids = [100]", nil},
		{"allowed_uids = [65534]", []string{"profiles.ci.allowed_uids"}},
		{"allowed_gids = [10, 65534]", []string{"profiles.ci.allowed_gids"}},
		{"allowed_uids = [65534]\nallowed_gids = [65534]", []string{"profiles.ci.allowed_gids", "profiles.ci.allowed_uids"}}, // sorted by key
	} {
		t.Run(tt.access, func(t *testing.T) {
			data := edit(minimal, `client_id = "3f1e"`, `client_id = "3f1e"`+"\n"+tt.access)
			_, warnings, err := Parse([]byte(data), exampleOptions())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var keys []string
			for _, w := range warnings {
				keys = append(keys, w.Key)
				if !strings.Contains(w.String(), "overflow") || !strings.Contains(w.String(), "user namespace") {
					t.Errorf("warning %q does not say why", w.String())
				}
			}
			if diff := cmp.Diff(tt.wantKeys, keys); diff != "" {
				t.Errorf("warning keys (-want +got):\n%s", diff)
			}
		})
	}
}
