package config

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// fileReader reads the files a configuration names. One serves one Load
// or Parse.
//
// Profiles often share files: one client secret, one user key, a profile
// per resource server or scope set. The fileReader reads each file once
// and parses each key, certificate and CA file's contents once: checking
// an RSA private key costs about 0.2 ms, and with 2,000 file reads made
// 1,000 such profiles take 0.35-0.4 s to load. Each profile naming a file
// still gets the file's problems and warnings, at its own key, worded as
// if it had read the file alone.
type fileReader struct {
	fsys fs.FS
	base string // where relative paths resolve
	r    *report

	reads map[readArgs]*readResult // read's results by its arguments
	keys  parseMemo[*rsa.PrivateKey]
	certs parseMemo[*x509.Certificate]
	cas   parseMemo[*x509.CertPool]
}

// readArgs are the arguments of read that decide its result.
type readArgs struct {
	path    string
	limit   int64
	private bool
}

// readResult is what reading a file gave: its contents, whether they
// can be used, and the messages to record at the key of every profile
// that names it.
type readResult struct {
	data     []byte // shared by every caller: not to be modified
	ok       bool
	problems []string
	warnings []string
}

// parseMemo remembers the result of a parse function by the SHA-256 of
// the contents it parsed.
type parseMemo[T any] struct {
	seen map[[sha256.Size]byte]parsed[T]
}

type parsed[T any] struct {
	v   T
	msg string
}

// get returns parse(data), calling parse only for contents not seen before.
func (m *parseMemo[T]) get(data []byte, parse func([]byte) (T, string)) (T, string) {
	sum := sha256.Sum256(data)
	if p, ok := m.seen[sum]; ok {
		return p.v, p.msg
	}
	v, msg := parse(data)
	if m.seen == nil {
		m.seen = make(map[[sha256.Size]byte]parsed[T])
	}
	m.seen[sum] = parsed[T]{v, msg}
	return v, msg
}

func newFileReader(opts Options, r *report) *fileReader {
	fsys := opts.FS
	if fsys == nil {
		fsys = os.DirFS("/")
	}
	base := opts.CredentialsDirectory
	if base == "" {
		base = opts.BaseDir
	}
	return &fileReader{fsys: fsys, base: base, r: r}
}

// resolve returns path made absolute and clean, or "" with a problem
// recorded at key.
func (f *fileReader) resolve(key, path string) string {
	if strings.ContainsRune(path, 0) {
		f.r.problem(key, "must not contain a NUL byte")
		return ""
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(f.base, path)
		if !filepath.IsAbs(path) {
			abs, err := filepath.Abs(path)
			if err != nil {
				f.r.problem(key, "cannot resolve %s: %v", path, err)
				return ""
			}
			path = abs
		}
	}
	return filepath.Clean(path)
}

// read returns the contents of the file at the absolute path, at most
// limit bytes. When private is set, a file that group or others may access
// gives a warning. Problems are recorded at key. The file is read once per
// Load; the contents returned are shared and must not be modified.
func (f *fileReader) read(key, path string, limit int64, private bool) ([]byte, bool) {
	args := readArgs{path, limit, private}
	res, seen := f.reads[args]
	if !seen {
		res = f.readFile(path, limit, private)
		if f.reads == nil {
			f.reads = make(map[readArgs]*readResult)
		}
		f.reads[args] = res
	}
	for _, msg := range res.problems {
		f.r.problem(key, "%s", msg)
	}
	for _, msg := range res.warnings {
		f.r.warn(key, "%s", msg)
	}
	return res.data, res.ok
}

// readFile reads the file at path for read.
func (f *fileReader) readFile(path string, limit int64, private bool) *readResult {
	res := &readResult{}
	fail := func(format string, args ...any) *readResult {
		res.problems = append(res.problems, fmt.Sprintf(format, args...))
		return res
	}
	name := strings.TrimPrefix(path, "/")
	if name == "" {
		name = "."
	}
	if !fs.ValidPath(name) {
		return fail("%s is not a valid path", path)
	}
	fi, err := fs.Stat(f.fsys, name)
	if err != nil {
		return fail("%s", fileErrorMessage(path, err))
	}
	if fi.IsDir() {
		return fail("%s is a directory, not a file", path)
	}
	if !fi.Mode().IsRegular() {
		return fail("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return fail("%s is larger than %d bytes", path, limit)
	}
	file, err := f.fsys.Open(name)
	if err != nil {
		return fail("%s", fileErrorMessage(path, err))
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, limit+1))
	if err != nil {
		return fail("%s", fileErrorMessage(path, err))
	}
	if int64(len(data)) > limit {
		return fail("%s is larger than %d bytes", path, limit)
	}
	switch perm := fi.Mode().Perm(); {
	case private && perm&0o077 != 0:
		what := "readable"
		if perm&0o044 == 0 {
			what = "accessible"
		}
		res.warnings = append(res.warnings, fmt.Sprintf("%s is %s by group or others (mode %04o); chmod 600 it", path, what, perm))
	case !private && writable(perm):
		res.warnings = append(res.warnings, writableMessage(path, perm))
	}
	res.data, res.ok = data, true
	return res
}

// writable reports whether perm lets group or others write a file.
func writable(perm fs.FileMode) bool { return perm&0o022 != 0 }

// writableMessage is the warning about a file at path that group or
// others can write.
func writableMessage(path string, perm fs.FileMode) string {
	return fmt.Sprintf("%s is writable by group or others (mode %04o); chmod go-w it", path, perm)
}

func fileErrorMessage(path string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path + " does not exist"
	case errors.Is(err, fs.ErrPermission):
		return path + " cannot be read: permission denied"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("cannot read %s: %v", path, err)
}

// readFiles resolves and reads every file of a profile into p.Creds.
func (pc *profileChecker) readFiles() {
	p := pc.p
	f := pc.files
	if p.ClientSecretFile != "" {
		key := pc.key("client_secret_file")
		if p.ClientSecretFile = f.resolve(key, p.ClientSecretFile); p.ClientSecretFile != "" {
			if data, ok := f.read(key, p.ClientSecretFile, maxSecretSize, true); ok {
				secret, msg := parseSecret(data)
				if msg != "" {
					pc.r.problem(key, "%s %s", p.ClientSecretFile, msg)
				}
				p.Creds.ClientSecret = secret
			}
		}
	}
	p.ClientKeyFile, p.Creds.ClientKey = pc.readKey(pc.key("client_key_file"), p.ClientKeyFile)
	p.ClientCertFile, p.Creds.ClientX5T = pc.readCert(pc.key("client_cert_file"), p.ClientCertFile, p.Creds.ClientKey, "client_key_file")
	if a := p.Assertion; a != nil {
		a.KeyFile, p.Creds.UserKey = pc.readKey(pc.key("assertion", "key_file"), a.KeyFile)
		a.CertFile, p.Creds.UserX5T = pc.readCert(pc.key("assertion", "cert_file"), a.CertFile, p.Creds.UserKey, "key_file")
	}
	if p.CAFile != "" {
		key := pc.key("ca_file")
		if p.CAFile = f.resolve(key, p.CAFile); p.CAFile != "" {
			if data, ok := f.read(key, p.CAFile, maxCASize, false); ok {
				pool, msg := f.cas.get(data, parseCAs)
				if msg != "" {
					pc.r.problem(key, "%s %s", p.CAFile, msg)
				}
				p.Creds.RootCAs = pool
			}
		}
	}
}

// readKey resolves and reads a private key file; it returns the resolved
// path and the key, nil after a problem.
func (pc *profileChecker) readKey(key, path string) (string, *rsa.PrivateKey) {
	if path == "" {
		return "", nil
	}
	if path = pc.files.resolve(key, path); path == "" {
		return "", nil
	}
	data, ok := pc.files.read(key, path, maxKeySize, true)
	if !ok {
		return path, nil
	}
	k, msg := pc.files.keys.get(data, parseRSAKey)
	if msg != "" {
		pc.r.problem(key, "%s %s", path, msg)
	}
	return path, k
}

// readCert resolves and reads a certificate file, checks it against the
// private key (when that was read), and returns the resolved path and the
// certificate's x5t.
func (pc *profileChecker) readCert(key, path string, priv *rsa.PrivateKey, keyField string) (string, string) {
	if path == "" {
		return "", ""
	}
	if path = pc.files.resolve(key, path); path == "" {
		return "", ""
	}
	data, ok := pc.files.read(key, path, maxKeySize, false)
	if !ok {
		return path, ""
	}
	cert, msg := pc.files.certs.get(data, parseCert)
	if msg != "" {
		pc.r.problem(key, "%s %s", path, msg)
		return path, ""
	}
	pub, isRSA := cert.PublicKey.(*rsa.PublicKey)
	if !isRSA {
		pc.r.problem(key, "%s holds a certificate for %s; RS256 needs an RSA key", path, keyTypeName(cert.PublicKey))
		return path, ""
	}
	if priv != nil && !priv.PublicKey.Equal(pub) {
		pc.r.problem(key, "%s does not match %s: the certificate is for another key", path, keyField)
	}
	return path, x5t(cert)
}

// x5t returns the x5t of a certificate: the base64url (unpadded) SHA-1
// digest of its DER encoding (RFC 7515 §4.1.7).
func x5t(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// parseSecret removes trailing line ends from a secret file's contents.
// The message, when not empty, completes "<path> ...".
func parseSecret(data []byte) (string, string) {
	s := string(data)
	for strings.HasSuffix(s, "\n") {
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	}
	switch {
	case s == "":
		return "", "is empty"
	case strings.ContainsAny(s, "\r\n"):
		return "", "holds more than one line; a secret is one line"
	}
	return s, ""
}

// parseRSAKey finds the one private key in PEM data. The message, when not
// empty, completes "<path> ..." and never contains key material.
func parseRSAKey(data []byte) (*rsa.PrivateKey, string) {
	var (
		found *pem.Block
		other []string
		rest  = data
	)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			other = append(other, block.Type)
			continue
		}
		if found != nil {
			return nil, "holds more than one private key"
		}
		found = block
	}
	if found == nil {
		if len(other) == 0 {
			return nil, "holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
		}
		return nil, fmt.Sprintf("holds no private key, only %s", strings.Join(other, ", "))
	}
	switch {
	case found.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(found.Headers["Proc-Type"], "ENCRYPTED"):
		return nil, "holds an encrypted private key; tokd needs it unencrypted (openssl pkey -in KEY -out NEWKEY)"
	case found.Type == "OPENSSH PRIVATE KEY":
		return nil, "holds a key in OpenSSH format; convert it to PEM (ssh-keygen -p -m PKCS8 -f KEY)"
	case found.Type == "EC PRIVATE KEY":
		return nil, "holds an EC key; RS256 needs an RSA key"
	case found.Type == "DSA PRIVATE KEY":
		return nil, "holds a DSA key; RS256 needs an RSA key"
	}
	key, err := parsePrivateKey(found.Bytes, found.Type == "RSA PRIVATE KEY")
	if err != nil {
		return nil, fmt.Sprintf("holds a %s that cannot be parsed: %v", found.Type, err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Sprintf("holds %s; RS256 needs an RSA key", keyTypeName(key))
	}
	if bits := rsaKey.N.BitLen(); bits < 2048 {
		return nil, fmt.Sprintf("holds a %d-bit RSA key; at least 2048 bits are needed", bits)
	}
	return rsaKey, ""
}

// parsePrivateKey parses a PKCS#1 or PKCS#8 private key. Either form may
// sit under either PEM label: the labelled one is tried first, and its
// error is returned when neither parses.
func parsePrivateKey(der []byte, pkcs1First bool) (any, error) {
	pkcs1 := func() (any, error) {
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, err // not a typed nil in an interface
		}
		return k, nil
	}
	pkcs8 := func() (any, error) { return x509.ParsePKCS8PrivateKey(der) }
	first, second := pkcs8, pkcs1
	if pkcs1First {
		first, second = pkcs1, pkcs8
	}
	k, err := first()
	if err == nil {
		return k, nil
	}
	if k, err2 := second(); err2 == nil {
		return k, nil
	}
	return nil, err
}

func keyTypeName(k any) string {
	switch k.(type) {
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return "an ECDSA key"
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "an Ed25519 key"
	case *ecdh.PrivateKey, *ecdh.PublicKey:
		return "an X25519 key"
	default:
		return "a non-RSA key"
	}
}

// parseCert returns the first PEM certificate in data.
func parseCert(data []byte) (*x509.Certificate, string) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("holds a certificate that cannot be parsed: %v", err)
		}
		return cert, ""
	}
}

// parseCAs returns the system pool plus the PEM certificates in data.
func parseCAs(data []byte) (*x509.CertPool, string) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	n := 0
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Sprintf("holds a certificate (number %d) that cannot be parsed: %v", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
	}
	return pool, ""
}
