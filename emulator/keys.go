package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// signer is the emulator's own signing key and its self-signed certificate.
type signer struct {
	key     *rsa.PrivateKey
	certDER []byte
	x5t     string
}

func newSigner(key *rsa.PrivateKey, now time.Time) (signer, error) {
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return signer{}, fmt.Errorf("emulator: signing key: %w", err)
		}
	}
	cert, err := NewSelfSignedCert(key, "tokd emulator signing key", now, 10*365*24*time.Hour)
	if err != nil {
		return signer{}, err
	}
	return signer{key: key, certDER: cert.Raw, x5t: Thumbprint(cert)}, nil
}

// sign returns claims signed RS256 with kid SigningKeyID.
func (s signer) sign(claims jwt.MapClaims) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = SigningKeyID
	tok.Header["x5t"] = s.x5t
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("emulator: sign access token: %w", err)
	}
	return signed, nil
}

// Thumbprint returns the x5t of cert: the base64url-encoded SHA-1 digest
// of its DER encoding (RFC 7515 §4.1.7).
func Thumbprint(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NewSelfSignedCert returns a self-signed certificate for key, valid from
// an hour before now for validity, as one imports into an app.
func NewSelfSignedCert(key *rsa.PrivateKey, commonName string, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("emulator: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("emulator: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("emulator: parse certificate: %w", err)
	}
	return cert, nil
}

// jwk is an RSA public key as RFC 7517 and RFC 7518 §6.3.1 write it, with
// the fields an identity domain's JWKS carries.
type jwk struct {
	Kty     string   `json:"kty"`
	Kid     string   `json:"kid"`
	Use     string   `json:"use"`
	Alg     string   `json:"alg"`
	N       string   `json:"n"`
	E       string   `json:"e"`
	X5C     []string `json:"x5c"`
	X5T     string   `json:"x5t"`
	X5TS256 string   `json:"x5t#S256"`
}

func (s signer) jwks() map[string][]jwk {
	pub := s.key.PublicKey
	s256 := sha256.Sum256(s.certDER)
	return map[string][]jwk{"keys": {{
		Kty:     "RSA",
		Kid:     SigningKeyID,
		Use:     "sig",
		Alg:     "RS256",
		N:       base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E:       base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		X5C:     []string{base64.StdEncoding.EncodeToString(s.certDER)},
		X5T:     s.x5t,
		X5TS256: base64.RawURLEncoding.EncodeToString(s256[:]),
	}}}
}

// PublicKey returns the public half of the key that signs access tokens.
func (e *Emulator) PublicKey() *rsa.PublicKey {
	return &e.signer.key.PublicKey
}

func (e *Emulator) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, nil, e.signer.jwks())
}

// discovery is the subset of OpenID Provider Metadata the domain publishes
// that tokd may read.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs      []string `json:"token_endpoint_auth_signing_alg_values_supported"`
}

func (e *Emulator) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	d := e.domainFor(r)
	writeJSON(w, http.StatusOK, nil, discovery{
		Issuer:                            e.issuer,
		TokenEndpoint:                     d + TokenPath,
		JWKSURI:                           d + JWKSPath,
		GrantTypesSupported:               []string{GrantClientCredentials, GrantJWTBearer, GrantRefreshToken},
		TokenEndpointAuthMethodsSupported: []string{authBasic, authPrivateKeyJWT},
		TokenEndpointAuthSigningAlgs:      []string{"RS256"},
	})
}

// writeJSON answers v as JSON with status and the extra headers in h.
func writeJSON(w http.ResponseWriter, status int, h http.Header, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"server_error","error_description":"cannot encode the response"}`)
	}
	for k, vs := range h {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
