package oauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Assertion describes a JWT that tokd signs: the user assertion of the
// jwt-bearer grant (RFC 7523 §2.1) or the client assertion that
// authenticates the client (RFC 7523 §2.2). Both follow the identity
// domain's rules: RS256, a kid (certificate alias) or x5t header, iss,
// sub, aud, iat, exp and a fresh jti on every signature.
type Assertion struct {
	Issuer   string        // the client ID
	Subject  string        // the user name, or the client ID for a client assertion
	Audience []string      // sent as a JSON array
	Lifetime time.Duration // exp - iat
	Key      *rsa.PrivateKey
	KeyID    string // kid: the alias the certificate was imported under
	X5T      string // x5t: base64url SHA-1 thumbprint; the server prefers it over kid
}

// DefaultAssertionLifetime is the lifetime of an assertion whose Lifetime is zero.
const DefaultAssertionLifetime = 5 * time.Minute

// IssuedAtSkew backdates iat, so that a server whose clock lags ours a
// little does not refuse the assertion as "used before issued" (fosite
// answers that with an HTTP 500); golang.org/x/oauth2's jws does the same.
// An assertion living under twice as long is backdated by half its
// lifetime instead, so that it is still valid when sent.
const IssuedAtSkew = 10 * time.Second

// Sign returns the assertion signed at now, with a new random jti, iat
// IssuedAtSkew before now (at most half the lifetime) and exp Lifetime
// after iat: exp - iat is the lifetime, which a server may cap.
func (a *Assertion) Sign(now time.Time) (string, error) {
	if a.Key == nil {
		return "", errors.New("assertion: no signing key")
	}
	if a.KeyID == "" && a.X5T == "" {
		return "", errors.New("assertion: neither kid nor x5t set")
	}
	jti, err := newJTI()
	if err != nil {
		return "", err
	}
	lifetime := a.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultAssertionLifetime
	}
	iat := now.Add(-min(IssuedAtSkew, lifetime/2)).Truncate(time.Second)
	claims := jwt.RegisteredClaims{
		Issuer:    a.Issuer,
		Subject:   a.Subject,
		Audience:  jwt.ClaimStrings(a.Audience),
		IssuedAt:  jwt.NewNumericDate(iat),
		ExpiresAt: jwt.NewNumericDate(iat.Add(lifetime)),
		ID:        jti,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if a.KeyID != "" {
		tok.Header["kid"] = a.KeyID
	}
	if a.X5T != "" {
		tok.Header["x5t"] = a.X5T
	}
	signed, err := tok.SignedString(a.Key)
	if err != nil {
		return "", fmt.Errorf("assertion: sign: %w", err)
	}
	return signed, nil
}

// X5T returns the x5t header value for cert: the base64url-encoded SHA-1
// digest of its DER encoding (RFC 7515 §4.1.7).
func X5T(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func newJTI() (string, error) {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("assertion: jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
