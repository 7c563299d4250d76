package config

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// Fingerprint returns a hex SHA-256 digest of the settings that decide
// which token the profile gets: the URLs, client ID, grant type, scopes
// (sorted, each once), refresh_token, how the client authenticates (and
// the client key's public key, kid and x5t), and the user assertion's
// subject, audience (sorted), lifetime, public key, kid and x5t. A cached
// token whose fingerprint differs from its profile's was obtained with
// other settings.
//
// It never covers secret or private key material: rotating the client
// secret keeps the fingerprint. Access control (allowed_uids,
// allowed_gids), git, docker, ca_file and timeout do not change it either.
// Call it on a profile returned by Load or Parse, whose defaults are set.
func (p *Profile) Fingerprint() string {
	type assertion struct {
		Subject   string   `json:"subject"`
		Audience  []string `json:"audience"`
		Lifetime  int64    `json:"lifetime_ns"`
		PublicKey string   `json:"public_key_sha256"`
		KeyID     string   `json:"kid"`
		X5T       string   `json:"x5t"`
	}
	fp := struct {
		Version         int        `json:"v"`
		DomainURL       string     `json:"domain_url"`
		TokenURL        string     `json:"token_url"`
		ClientID        string     `json:"client_id"`
		GrantType       string     `json:"grant_type"`
		Scopes          []string   `json:"scopes"`
		RefreshToken    bool       `json:"refresh_token"`
		ClientAuth      string     `json:"client_auth"`
		ClientPublicKey string     `json:"client_public_key_sha256"`
		ClientKeyID     string     `json:"client_kid"`
		ClientX5T       string     `json:"client_x5t"`
		Assertion       *assertion `json:"assertion"`
	}{
		Version:         1,
		DomainURL:       p.DomainURL,
		TokenURL:        p.TokenURL,
		ClientID:        p.ClientID,
		GrantType:       p.GrantType,
		Scopes:          sortedUnique(p.Scopes),
		RefreshToken:    p.RefreshToken,
		ClientPublicKey: publicKeySHA256(p.Creds.ClientKey),
		ClientKeyID:     p.ClientKeyID,
		ClientX5T:       p.Creds.ClientX5T,
	}
	if fp.GrantType == "" {
		fp.GrantType = GrantJWTBearer
	}
	switch {
	case p.ClientKeyFile != "":
		fp.ClientAuth = "private_key_jwt"
	case p.ClientSecretFile != "":
		fp.ClientAuth = "client_secret_basic"
	}
	if a := p.Assertion; a != nil {
		fp.Assertion = &assertion{
			Subject:   a.Subject,
			Audience:  sortedUnique(a.Audience),
			Lifetime:  int64(a.Lifetime.Duration),
			PublicKey: publicKeySHA256(p.Creds.UserKey),
			KeyID:     a.KeyID,
			X5T:       p.Creds.UserX5T,
		}
	}
	b, _ := json.Marshal(fp) // strings, integers and booleans always marshal
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func sortedUnique(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// publicKeySHA256 returns the hex SHA-256 of the key's public half in
// PKIX DER form, or "" for no key.
func publicKeySHA256(k *rsa.PrivateKey) string {
	if k == nil {
		return ""
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
