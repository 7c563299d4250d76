package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"
)

// keys holds key material generated once for all tests.
type keys struct {
	user, other *rsa.PrivateKey
	userPKCS8   string // PEM "PRIVATE KEY"
	userPKCS1   string // PEM "RSA PRIVATE KEY"
	otherPKCS8  string
	userCert    string // self-signed certificate for user
	otherCert   string // self-signed certificate for other
	small       string // 1024-bit RSA key
	ec          string // PKCS#8 ECDSA key
	encrypted   string // legacy encrypted PEM
}

var testKeys = sync.OnceValue(func() *keys {
	gen := func(bits int) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		return k
	}
	pkcs8 := func(k any) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	cert := func(k *rsa.PrivateKey, cn string) string {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			panic(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	k := &keys{user: gen(2048), other: gen(2048)}
	k.userPKCS8 = pkcs8(k.user)
	k.userPKCS1 = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.user)}))
	k.otherPKCS8 = pkcs8(k.other)
	k.userCert = cert(k.user, "ci-user")
	k.otherCert = cert(k.other, "other")
	k.small = pkcs8(gen(1024))
	k.ec = pkcs8(ec)
	k.encrypted = string(pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   make([]byte, 64),
	}))
	return k
})

// testSecret is the client secret of the test file system: it holds the
// characters that break naive Basic authentication.
const testSecret = "s3cr+t/=&"

// memFS returns an in-memory file system holding files by absolute path,
// each with mode 0600.
func memFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for path, data := range files {
		m[strings.TrimPrefix(path, "/")] = &fstest.MapFile{Data: []byte(data), Mode: 0o600}
	}
	return m
}

// exampleFiles returns the files the example names, plus a few
// more that the tests refer to.
func exampleFiles() map[string]string {
	k := testKeys()
	return map[string]string{
		"/etc/tokd/ci.secret":     testSecret + "\n",
		"/etc/tokd/ci-user.pem":   k.userPKCS8,
		"/etc/tokd/ci-user.crt":   k.userCert,
		"/etc/tokd/ci-client.pem": k.otherPKCS8,
		"/etc/tokd/ci-client.crt": k.otherCert,
		"/etc/tokd/pkcs1.pem":     k.userPKCS1,
		"/etc/tokd/other.pem":     k.otherPKCS8,
		"/etc/tokd/other.crt":     k.otherCert,
		"/etc/tokd/small.pem":     k.small,
		"/etc/tokd/ec.pem":        k.ec,
		"/etc/tokd/encrypted.pem": k.encrypted,
		"/etc/tokd/cert-only.pem": k.userCert,
		"/etc/tokd/empty.secret":  "\n",
		"/etc/tokd/ca.pem":        k.userCert,
		"/etc/tokd/not-ca.pem":    "not a certificate\n",
	}
}

func exampleOptions() Options {
	return Options{FS: memFS(exampleFiles())}
}

// edit returns s with each old string replaced by its new one; it panics
// when an old string is missing, so that a broken test case shows at once.
func edit(s string, oldNew ...string) string {
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			panic("edit: " + oldNew[i] + " not found")
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return s
}

func mustParse(t *testing.T, data string, opts Options) *Config {
	t.Helper()
	cfg, _, err := Parse([]byte(data), opts)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}
