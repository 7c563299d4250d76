package emulator

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// sweepThreshold is the number of remembered JWT IDs (or refresh tokens)
// beyond which expired entries are swept on each insertion.
const sweepThreshold = 4096

// jwtHeader is the part of a JOSE header the identity domain reads.
type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
	X5T string `json:"x5t"`
}

// decodeJWT decodes the header and claims of a compact JWT without
// verifying anything.
func decodeJWT(raw string) (jwtHeader, jwt.RegisteredClaims, error) {
	var h jwtHeader
	var c jwt.RegisteredClaims
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return h, c, errors.New("not a compact JWS (header.payload.signature)")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, c, errors.New("header is not base64url")
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, c, errors.New("header is not a JSON object")
	}
	cb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return h, c, errors.New("payload is not base64url")
	}
	if err := json.Unmarshal(cb, &c); err != nil {
		return h, c, fmt.Errorf("claims are not a JSON object of the expected types: %v", err)
	}
	return h, c, nil
}

// assertionKind tells a user assertion from a client assertion.
type assertionKind int

const (
	userAssertion assertionKind = iota
	clientAssertion
)

func (k assertionKind) String() string {
	if k == clientAssertion {
		return "client assertion"
	}
	return "assertion"
}

// verifyAssertion checks raw against the identity domain's rules for an
// assertion of client a, and on success records its jti. It returns the
// claims, or a description of the first broken rule (never containing the
// assertion itself).
func (e *Emulator) verifyAssertion(raw string, a *app, kind assertionKind, domain string, now time.Time) (*jwt.RegisteredClaims, error) {
	h, c, err := decodeJWT(raw)
	if err != nil {
		return nil, fmt.Errorf("%s is malformed: %v", kind, err)
	}
	if h.Alg != "RS256" {
		return nil, fmt.Errorf("%s alg %q is not supported: use RS256", kind, h.Alg)
	}
	if h.Typ != "" && !strings.EqualFold(h.Typ, "JWT") {
		return nil, fmt.Errorf("%s typ %q is not JWT", kind, h.Typ)
	}
	// x5t wins over kid when both are present.
	var pub *rsa.PublicKey
	var certName string
	switch {
	case h.X5T != "":
		cert := a.byX5T[h.X5T]
		if cert == nil {
			return nil, fmt.Errorf("%s x5t %q matches no certificate imported into client %q", kind, h.X5T, a.ClientID)
		}
		pub, certName = a.certKeys[cert], "x5t "+h.X5T
		if err := e.checkCertTime(cert.NotBefore, cert.NotAfter, now); err != nil {
			return nil, fmt.Errorf("%s: certificate %s %v", kind, certName, err)
		}
	case h.Kid != "":
		cert := a.Certs[h.Kid]
		if cert == nil {
			return nil, fmt.Errorf("%s kid %q is not the alias of a certificate imported into client %q", kind, h.Kid, a.ClientID)
		}
		pub, certName = a.certKeys[cert], "alias "+h.Kid
		if err := e.checkCertTime(cert.NotBefore, cert.NotAfter, now); err != nil {
			return nil, fmt.Errorf("%s: certificate %s %v", kind, certName, err)
		}
	default:
		return nil, fmt.Errorf("%s header has neither kid nor x5t", kind)
	}
	_, err = jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation()).
		Parse(raw, func(*jwt.Token) (any, error) { return pub, nil })
	if err != nil {
		return nil, fmt.Errorf("%s signature does not verify with the certificate of %s", kind, certName)
	}
	if c.Issuer != a.ClientID {
		return nil, fmt.Errorf("%s iss %q is not the client ID %q", kind, c.Issuer, a.ClientID)
	}
	switch kind {
	case userAssertion:
		if c.Subject == "" || !e.isUser(c.Subject) {
			return nil, fmt.Errorf("assertion sub %q is not a user of the identity domain", c.Subject)
		}
	case clientAssertion:
		if c.Subject != a.ClientID {
			return nil, fmt.Errorf("client assertion sub %q is not the client ID %q", c.Subject, a.ClientID)
		}
	}
	if !audienceOK(c.Audience, domain) {
		return nil, fmt.Errorf("%s aud %q contains neither the domain URL %s/ nor %s", kind, []string(c.Audience), domain, OracleAudience)
	}
	if c.ExpiresAt == nil {
		return nil, fmt.Errorf("%s has no exp claim", kind)
	}
	exp := c.ExpiresAt.Time
	if now.After(exp.Add(e.skew)) {
		return nil, fmt.Errorf("%s expired at %s", kind, exp.UTC().Format(time.RFC3339))
	}
	start := now
	if c.IssuedAt != nil {
		if c.IssuedAt.After(now.Add(e.skew)) {
			return nil, fmt.Errorf("%s iat %s is in the future", kind, c.IssuedAt.UTC().Format(time.RFC3339))
		}
		start = c.IssuedAt.Time
	}
	if c.NotBefore != nil && c.NotBefore.After(now.Add(e.skew)) {
		return nil, fmt.Errorf("%s is not valid before %s", kind, c.NotBefore.UTC().Format(time.RFC3339))
	}
	if exp.Sub(start) > e.maxAssertion {
		return nil, fmt.Errorf("%s lifetime %s exceeds the maximum of %s", kind, exp.Sub(start), e.maxAssertion)
	}
	if c.ID == "" {
		return nil, fmt.Errorf("%s has no jti claim", kind)
	}
	if !e.useJTI(a.ClientID, c.ID, exp.Add(e.skew), now) {
		return nil, fmt.Errorf("%s jti %q has already been used", kind, c.ID)
	}
	return &c, nil
}

func (e *Emulator) checkCertTime(notBefore, notAfter, now time.Time) error {
	switch {
	case now.Add(e.skew).Before(notBefore):
		return fmt.Errorf("is not valid before %s", notBefore.UTC().Format(time.RFC3339))
	case now.Add(-e.skew).After(notAfter):
		return fmt.Errorf("expired at %s", notAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// audienceOK reports whether aud holds the domain URL, with or without a
// trailing slash, or OracleAudience.
func audienceOK(aud jwt.ClaimStrings, domain string) bool {
	for _, a := range aud {
		a = strings.TrimSuffix(a, "/")
		if a == domain || a == strings.TrimSuffix(OracleAudience, "/") {
			return true
		}
	}
	return false
}

// useJTI records the jti of clientID until forget and reports whether it
// was unused.
func (e *Emulator) useJTI(clientID, jti string, forget, now time.Time) bool {
	key := clientID + "\x00" + jti
	e.mu.Lock()
	defer e.mu.Unlock()
	if until, ok := e.jtis[key]; ok && now.Before(until) {
		return false
	}
	if len(e.jtis) >= sweepThreshold {
		for k, until := range e.jtis {
			if !now.Before(until) {
				delete(e.jtis, k)
			}
		}
	}
	e.jtis[key] = forget
	return true
}
