// Package config loads tokd's configuration: one TOML file, decoded
// strictly, validated, and with the secrets, keys and certificates it names
// read and parsed, so that nothing later has to open a file or report a
// configuration mistake.
//
// # Decoding
//
// Every key must be known, spelled in lower case exactly as documented: an
// unknown key is a problem naming its full dotted path
// ("profiles.ci.assertion.kid: unknown key"). A value of the wrong type is
// a problem naming its key ("profiles.ci.allowed_uids: must be a list of
// numeric IDs (0 to 4294967295); item 1 (-1) is out of range"). Every
// problem found is reported, sorted by key, in one *ValidationError. A TOML
// syntax error stops decoding and is a *SyntaxError with line and column.
//
// # Top-level keys
//
//   - socket, state_dir: absolute paths when set; the socket path must fit a
//     sun_path (at most 107 bytes). Empty means the daemon's default.
//   - metrics_address: host:port with a numeric port 1-65535 (the host may
//     be empty, meaning every address). Empty means no metrics listener.
//   - start_jitter: a duration string, default "0s", range 0s to 1h. Each
//     profile that has no stored token to serve is fetched at a random
//     moment within this long after start (or after a reload adds or
//     changes it), so that a fleet restarted at once does not send all its
//     token requests in the same instant; a client asking for the token
//     still gets it at once. For H hosts with P profiles each on one
//     identity domain allowing M requests a minute, set it to
//     1.3 × H × P / M minutes (docs/FLEET.md); 0 suits a single host. A
//     new value takes effect at the next restart, not on reload.
//   - profiles: at least one [profiles.NAME]; NAME matches
//     ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ since it appears in URLs and metric
//     labels.
//
// # Profiles
//
//   - domain_url: an absolute https URL with a host and no user info, query
//     or fragment; a trailing slash is trimmed and the host lower-cased.
//     http is accepted only for loopback hosts (localhost, 127.0.0.0/8, ::1)
//     so that tests and the development emulator work. Required unless
//     token_url is set, or the profile never talks to the server
//     (grant_type = "import" without client authentication).
//   - token_url: same URL rules, not trimmed; defaults to domain_url +
//     "/oauth2/v1/token".
//   - grant_type: "jwt-bearer" (the default), "client_credentials" or
//     "import".
//   - client authentication: client_secret_file, or client_key_file (a
//     client assertion) with client_key_id and/or client_cert_file, never
//     both kinds. It is required for jwt-bearer and client_credentials, and
//     for import when refresh_token = true (refreshing needs it); otherwise
//     optional. client_id is required whenever client authentication is set
//     or the grant is not import.
//   - [assertion] (the user assertion) is required for jwt-bearer and refused
//     for the other grants. It needs subject, key_file, and key_id and/or
//     cert_file. audience defaults to [domain_url + "/",
//     "https://identity.oraclecloud.com/"] and must be given when
//     domain_url is not set; lifetime defaults to 5m, range 10s to 1h.
//   - refresh_token = true is refused with client_credentials, which issues
//     no refresh token (RFC 6749 §4.4.3).
//   - timeout: per token request, default 30s, range 1s to 5m.
//   - scopes: each a non-empty string without whitespace, listed once.
//     urn:opc:resource:multiresourcescope is refused, and so are scopes that
//     span several resource servers: OCI then answers one token per
//     resource server ({"tokenResponses":[...]}), which tokd cannot serve as
//     one token. The resource server of urn:opc:idm:* is the identity
//     domain; that of an absolute URL scope is its scheme://host; the
//     modifiers offline_access, openid and urn:opc:resource:expiry=N (N a
//     positive integer) belong to none; other scopes are not attributed.
//     urn:opc:resource:consumer::all cannot be combined with any scope other
//     than a modifier. No scope at all is accepted (the server's default).
//   - client_id, client_key_id, assertion.subject, assertion.key_id,
//     git.username and docker.username must not contain control characters
//     or start or end with whitespace; client_id, scopes and audiences
//     contain no whitespace at all.
//   - [git]: urls (at least one) are absolute http or https URLs with a host,
//     without user info, query or fragment; username defaults to "oauth2".
//   - [docker]: registries (at least one) are host[:port]; "https://host/"
//     and "http://host:port" forms are accepted and normalised to
//     host[:port], the host lower-cased; username defaults to
//     "oauth2accesstoken".
//   - No git URL or docker registry may be claimed by two profiles.
//
// # Files
//
// client_secret_file, client_key_file, client_cert_file, ca_file,
// assertion.key_file and assertion.cert_file are read by Load and Parse
// through Options.FS. A relative path resolves against
// Options.CredentialsDirectory when set (systemd LoadCredential=), else
// against Options.BaseDir, which Load sets to the configuration file's
// directory; the resolved absolute path replaces the configured one. Files
// must be regular files; a missing or unreadable file is a problem naming
// the key and the path.
//
//   - Secret file: at most 64 KiB; trailing newlines ("\n" or "\r\n") are
//     removed; an empty secret, or one of several lines, is a problem.
//   - Key files: at most 64 KiB; an unencrypted PEM RSA private key, PKCS#1
//     or PKCS#8, of at least 2048 bits, and only one key per file.
//   - Certificate files: the first PEM certificate is used; its x5t is the
//     base64url (unpadded) SHA-1 of its DER; its public key must match the
//     key file beside it.
//   - ca_file: at most 4 MiB of PEM certificates, at least one; the pool is
//     the system pool plus these.
//   - A secret or key file with any permission for group or others gives a
//     Warning, as ssh does; so does a certificate or CA file, or the
//     configuration file itself, that group or others can write: whoever
//     can write them can make tokd trust another server, or send the
//     client secret to one.
//
// No message ever holds secret or key material.
package config

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Grant types.
const (
	GrantJWTBearer         = "jwt-bearer"
	GrantClientCredentials = "client_credentials"
	GrantImport            = "import"
)

// Defaults and limits.
const (
	DefaultTokenPath         = "/oauth2/v1/token"
	DefaultTimeout           = 30 * time.Second
	MinTimeout               = 1 * time.Second
	MaxTimeout               = 5 * time.Minute
	DefaultLifetime          = 5 * time.Minute
	MinLifetime              = 10 * time.Second
	MaxLifetime              = 1 * time.Hour
	DefaultStartJitter       = 0
	MaxStartJitter           = 1 * time.Hour
	DefaultGitUsername       = "oauth2"
	DefaultDockerUsername    = "oauth2accesstoken"
	OracleIdentityAudience   = "https://identity.oraclecloud.com/"
	maxConfigSize            = 1 << 20
	maxSecretSize            = 64 << 10
	maxKeySize               = 64 << 10
	maxCASize                = 4 << 20
	maxSocketPathLen         = 107
	profileNamePatternString = `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`
)

// Config is tokd's configuration.
type Config struct {
	Socket         string              `toml:"socket"`
	StateDir       string              `toml:"state_dir"`
	MetricsAddress string              `toml:"metrics_address"`
	StartJitter    Duration            `toml:"start_jitter"` // cache.Options.StartJitter, default 0, range 0..1h
	Profiles       map[string]*Profile `toml:"profiles"`
}

// ProfileNames returns the profile names, sorted.
func (c *Config) ProfileNames() []string {
	names := make([]string, 0, len(c.Profiles))
	for name := range c.Profiles {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Profile describes one token: where it comes from, how tokd authenticates,
// and who may have it.
type Profile struct {
	Name             string      `toml:"-"` // the key under [profiles]
	DomainURL        string      `toml:"domain_url"`
	TokenURL         string      `toml:"token_url"` // defaulted to DomainURL + "/oauth2/v1/token"
	ClientID         string      `toml:"client_id"`
	ClientSecretFile string      `toml:"client_secret_file"`
	ClientKeyFile    string      `toml:"client_key_file"`  // client assertion instead of a secret
	ClientKeyID      string      `toml:"client_key_id"`    // kid of the client assertion
	ClientCertFile   string      `toml:"client_cert_file"` // or x5t of the client assertion
	GrantType        string      `toml:"grant_type"`       // "jwt-bearer" (default), "client_credentials", "import"
	Scopes           []string    `toml:"scopes"`
	RefreshToken     bool        `toml:"refresh_token"`
	AllowedUIDs      []uint32    `toml:"allowed_uids"`
	AllowedGIDs      []uint32    `toml:"allowed_gids"`
	CAFile           string      `toml:"ca_file"`
	Timeout          Duration    `toml:"timeout"` // per token request, default 30s, range 1s..5m
	Assertion        *Assertion  `toml:"assertion"`
	Git              *Git        `toml:"git"`
	Docker           *Docker     `toml:"docker"`
	Creds            Credentials `toml:"-"` // resolved by Load
}

// Assertion configures the user assertion of the jwt-bearer grant.
type Assertion struct {
	Subject  string   `toml:"subject"`
	KeyFile  string   `toml:"key_file"`
	KeyID    string   `toml:"key_id"`    // kid: the alias of the certificate in the app
	CertFile string   `toml:"cert_file"` // or x5t of this certificate
	Audience []string `toml:"audience"`
	Lifetime Duration `toml:"lifetime"` // default 5m, range 10s..1h
}

// Git configures the git credential helper for a profile.
type Git struct {
	URLs     []string `toml:"urls"`
	Username string   `toml:"username"` // default "oauth2"
}

// Docker configures the docker credential helper for a profile.
type Docker struct {
	Registries []string `toml:"registries"` // host[:port], lower case
	Username   string   `toml:"username"`   // default "oauth2accesstoken"
}

// Credentials holds the material read from a profile's files. Its String,
// Format and MarshalJSON methods never print secret or key material.
type Credentials struct {
	ClientSecret string // trailing newline(s) removed
	ClientKey    *rsa.PrivateKey
	ClientX5T    string // base64url (no padding) SHA-1 of the client cert DER, when client_cert_file is set
	UserKey      *rsa.PrivateKey
	UserX5T      string
	RootCAs      *x509.CertPool // system pool plus ca_file, nil when no ca_file
}

// String describes which credentials are present, without their values.
func (c Credentials) String() string {
	var parts []string
	if c.ClientSecret != "" {
		parts = append(parts, "client_secret=[redacted]")
	}
	if c.ClientKey != nil {
		parts = append(parts, fmt.Sprintf("client_key=RSA-%d", c.ClientKey.N.BitLen()))
	}
	if c.ClientX5T != "" {
		parts = append(parts, "client_x5t="+c.ClientX5T)
	}
	if c.UserKey != nil {
		parts = append(parts, fmt.Sprintf("user_key=RSA-%d", c.UserKey.N.BitLen()))
	}
	if c.UserX5T != "" {
		parts = append(parts, "user_x5t="+c.UserX5T)
	}
	if c.RootCAs != nil {
		parts = append(parts, "root_cas=system+ca_file")
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// Format prints String for every verb, so that no formatting of a Profile
// reveals a secret or a private key.
func (c Credentials) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }

// MarshalJSON encodes String as a JSON string: encoding/json, and the
// slog JSON handler that uses it, do not call Format, and would otherwise
// write the client secret and every private key's exponents.
func (c Credentials) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// Duration is a time.Duration written in TOML as a string like "5m".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration such as "30s", "5m" or "1h30m".
func (d *Duration) UnmarshalText(text []byte) error {
	s := string(text)
	v, err := time.ParseDuration(s)
	if err != nil {
		if strings.Trim(s, "0123456789.+-") == "" && s != "" {
			return fmt.Errorf("invalid duration %q: add a unit, like \"30s\" or \"5m\"", s)
		}
		return fmt.Errorf("invalid duration %q: use a number and a unit, like \"30s\", \"5m\" or \"1h30m\"", s)
	}
	d.Duration = v
	return nil
}

// MarshalText returns the duration as a string like "5m0s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Options tell Load and Parse where to find the files a configuration names.
type Options struct {
	// BaseDir is the directory relative paths resolve against when
	// CredentialsDirectory is empty. Load sets it to the configuration
	// file's directory when it is empty; for Parse, empty means the
	// current directory.
	BaseDir string
	// CredentialsDirectory, when set, is where relative paths resolve; the
	// caller passes os.Getenv("CREDENTIALS_DIRECTORY").
	CredentialsDirectory string
	// FS reads the secret, key, certificate and CA files, and reports their
	// modes. It is rooted at "/": an absolute path /etc/tokd/ci.secret is
	// read as "etc/tokd/ci.secret". Nil means the real file system.
	FS fs.FS
}

// Load reads, decodes and validates the configuration file at path and
// reads the files it names. A missing file gives an error that matches
// fs.ErrNotExist, unlike an invalid one, which gives a *ValidationError or
// a *SyntaxError. The configuration file itself is always read from the
// operating system, not from opts.FS; if group or others can write it, the
// first warning, with an empty key, says so. Warnings are returned even
// with an error.
func Load(path string, opts Options) (*Config, []Warning, error) {
	data, perm, err := readConfigFile(path)
	if err != nil {
		return nil, nil, err
	}
	var fileWarnings []Warning
	if writable(perm) {
		// Whoever can write the configuration can point token_url or
		// ca_file elsewhere and collect the client secret.
		fileWarnings = append(fileWarnings, Warning{Msg: writableMessage(path, perm)})
	}
	if opts.BaseDir == "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		opts.BaseDir = filepath.Dir(abs)
	}
	cfg, warnings, err := Parse(data, opts)
	var se *SyntaxError
	if errors.As(err, &se) {
		se.Path = path
	}
	return cfg, append(fileWarnings, warnings...), err
}

// readConfigFile returns the contents of the configuration file and its
// permission bits.
func readConfigFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("config: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("config: %w", err)
	}
	if len(data) > maxConfigSize {
		return nil, 0, fmt.Errorf("config: %s is larger than %d bytes", path, maxConfigSize)
	}
	return data, fi.Mode().Perm(), nil
}

// Parse decodes and validates a configuration and reads the files it
// names, as Load does. On success every default is filled in, every
// relative path is made absolute and every profile's Creds is set.
func Parse(data []byte, opts Options) (*Config, []Warning, error) {
	var raw rawConfig
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, &SyntaxError{Line: pe.Position.Line, Column: pe.Position.Col, Msg: pe.Message, Err: err}
		}
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	r := newReport()
	d := &decoder{md: &md, r: r}
	cfg := d.config(&raw)
	d.unknownKeys()

	v := &validator{r: r, files: newFileReader(opts, r)}
	v.config(cfg)

	if err := r.err(); err != nil {
		return nil, r.sortedWarnings(), err
	}
	return cfg, r.sortedWarnings(), nil
}
