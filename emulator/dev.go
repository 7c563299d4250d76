package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"time"
)

// DevApp is the demo app and user NewDev registers, with what tokd's
// configuration needs to use them.
type DevApp struct {
	ClientID     string
	ClientSecret string // standard base64, so it may hold "+", "/" and "=": send it URL-encoded
	CertAlias    string // the kid to send
	User         string // the sub of user assertions
	KeyPEM       []byte // PKCS #8 RSA private key of the imported certificate
	CertPEM      []byte
	// Scopes are the scopes the app may request: the identity domain's
	// and those of the demo resource servers.
	Scopes []string
}

// Demo resource servers that NewDev registers.
const (
	DevAPIAudience   = "https://api.example.com/"
	DevOtherAudience = "https://other.example.com/"
	DevUser          = "dev.user@example.com"
	DevCertAlias     = "tokd-dev"
)

// NewDev returns an emulator holding a demo app (all three grants, a fresh
// RSA key and self-signed certificate imported under DevCertAlias, a
// random client ID and secret), the user DevUser and two resource servers:
// DevAPIAudience (scopes read and write, refresh allowed) and
// DevOtherAudience (scope read, no refresh). The emulator's own signing
// key is generated afresh unless opts has one.
func NewDev(opts Options) (*Emulator, *DevApp, error) {
	em, err := New(opts)
	if err != nil {
		return nil, nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("emulator: dev key: %w", err)
	}
	var id [16]byte
	var secret [24]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, nil, fmt.Errorf("emulator: dev client ID: %w", err)
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, nil, fmt.Errorf("emulator: dev client secret: %w", err)
	}
	dev := &DevApp{
		ClientID:     hex.EncodeToString(id[:]),
		ClientSecret: base64.StdEncoding.EncodeToString(secret[:]),
		CertAlias:    DevCertAlias,
		User:         DevUser,
		Scopes: []string{
			ScopeMyScopes,
			DevAPIAudience + "read", DevAPIAudience + "write",
			DevOtherAudience + "read",
		},
	}
	cert, err := NewSelfSignedCert(key, "tokd dev "+dev.ClientID, em.now(), 10*365*24*time.Hour)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("emulator: dev key: %w", err)
	}
	dev.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	dev.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})

	em.AddUser(dev.User)
	for _, rs := range []ResourceServer{
		{Audience: DevAPIAudience, Scopes: []string{"read", "write"}, AllowRefresh: true},
		{Audience: DevOtherAudience, Scopes: []string{"read"}},
	} {
		if err := em.AddResourceServer(rs); err != nil {
			return nil, nil, err
		}
	}
	err = em.AddApp(App{
		ClientID:      dev.ClientID,
		ClientSecret:  dev.ClientSecret,
		Certs:         map[string]*x509.Certificate{dev.CertAlias: cert},
		GrantTypes:    []string{GrantJWTBearer, GrantClientCredentials, GrantRefreshToken},
		AllowedScopes: dev.Scopes,
	})
	if err != nil {
		return nil, nil, err
	}
	return em, dev, nil
}
