package oauth

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"time"
)

// ClientAuth authenticates the client on a token request.
type ClientAuth interface {
	// Authenticate adds the client's credentials to the request header
	// or form, for a request sent at now.
	Authenticate(h http.Header, form url.Values, now time.Time) error
}

// ClientAssertionType is the client_assertion_type of RFC 7523 §2.2.
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// SecretAuth authenticates with HTTP Basic: the client ID and secret are
// each form-URL-encoded before they are joined and base64-encoded, as
// RFC 6749 §2.3.1 requires (a secret holding "+/=&" fails otherwise).
type SecretAuth struct {
	ClientID string
	Secret   string
}

// Authenticate sets the Authorization header.
func (a SecretAuth) Authenticate(h http.Header, _ url.Values, _ time.Time) error {
	cred := url.QueryEscape(a.ClientID) + ":" + url.QueryEscape(a.Secret)
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	return nil
}

// AssertionAuth authenticates with a client assertion (private_key_jwt):
// client_id, client_assertion_type and a freshly signed client_assertion
// whose iss and sub are the client ID.
type AssertionAuth struct {
	Assertion Assertion
}

// Authenticate signs a new client assertion and adds it to the form.
func (a AssertionAuth) Authenticate(_ http.Header, form url.Values, now time.Time) error {
	signed, err := a.Assertion.Sign(now)
	if err != nil {
		return err
	}
	form.Set("client_id", a.Assertion.Issuer)
	form.Set("client_assertion_type", ClientAssertionType)
	form.Set("client_assertion", signed)
	return nil
}

// PublicAuth identifies a client that has no credentials by its
// client_id alone (RFC 6749 §3.2.1).
type PublicAuth struct {
	ClientID string
}

// Authenticate adds client_id to the form when it is set.
func (a PublicAuth) Authenticate(_ http.Header, form url.Values, _ time.Time) error {
	if a.ClientID != "" {
		form.Set("client_id", a.ClientID)
	}
	return nil
}
