package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// connCounter is a token endpoint that counts the connections it
// accepted and the most requests it had in flight at once.
type connCounter struct {
	mu             sync.Mutex
	conns          int
	inFlight, most int
	handle         func(w http.ResponseWriter, r *http.Request) // nil: a token
	srv            *httptest.Server
}

func newConnCounter(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *connCounter {
	t.Helper()
	c := &connCounter{handle: handle}
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.inFlight++
		c.most = max(c.most, c.inFlight)
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.inFlight--
			c.mu.Unlock()
		}()
		if c.handle != nil {
			c.handle(w, r)
			return
		}
		jsonReply(200, `{"access_token":"a","token_type":"Bearer","expires_in":60}`)(w, r)
	}))
	c.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			c.mu.Lock()
			c.conns++
			c.mu.Unlock()
		}
	}
	c.srv.Start()
	t.Cleanup(c.srv.Close)
	return c
}

func (c *connCounter) counts() (conns, most int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conns, c.most
}

// TestSharedTransportBoundsConnections sends the requests of many clients
// at once through one transport: they share at most MaxConnsPerHost
// connections to the endpoint and all succeed.
func TestSharedTransportBoundsConnections(t *testing.T) {
	const clients = 3 * MaxConnsPerHost
	ep := newConnCounter(t, nil)
	tr := NewTransport(nil)
	t.Cleanup(tr.CloseIdleConnections)
	errs := make(chan error, clients)
	for i := range clients {
		c := &Client{
			TokenURL:   ep.srv.URL + "/oauth2/v1/token",
			Auth:       SecretAuth{ClientID: fmt.Sprint("client-", i), Secret: "s"},
			HTTPClient: NewHTTPClientWith(tr, 0),
		}
		go func() {
			_, err := c.ClientCredentials(context.Background(), nil)
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	conns, most := ep.counts()
	if conns > MaxConnsPerHost || most > MaxConnsPerHost {
		t.Errorf("%d clients opened %d connections with up to %d requests in flight; want at most %d",
			clients, conns, most, MaxConnsPerHost)
	}
}

// TestSharedTransportPerClientTimeout checks that clients sharing a
// transport keep their own timeouts: a request of the short-timeout
// client fails, while one of the long-timeout client, sent earlier and
// answered later, succeeds.
func TestSharedTransportPerClientTimeout(t *testing.T) {
	arrived := make(chan string, 2)
	release := make(chan struct{})
	ep := newConnCounter(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.FormValue("scope")
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		jsonReply(200, `{"access_token":"a","token_type":"Bearer","expires_in":60}`)(w, r)
	})
	tr := NewTransport(nil)
	t.Cleanup(tr.CloseIdleConnections)
	client := func(timeout time.Duration) *Client {
		return &Client{
			TokenURL:   ep.srv.URL + "/oauth2/v1/token",
			Auth:       SecretAuth{ClientID: "c", Secret: "s"},
			HTTPClient: NewHTTPClientWith(tr, timeout),
		}
	}
	patient, hasty := client(time.Hour), client(50*time.Millisecond)

	patientErr := make(chan error, 1)
	go func() {
		_, err := patient.ClientCredentials(context.Background(), []string{"patient"})
		patientErr <- err
	}()
	if got := <-arrived; got != "patient" {
		t.Fatalf("first request has scope %q", got)
	}
	_, err := hasty.ClientCredentials(context.Background(), []string{"hasty"})
	var oe *Error
	if !errors.As(err, &oe) || oe.Description != "timeout" {
		t.Errorf("short-timeout client: err = %v, want a timeout", err)
	}
	close(release)
	if err := <-patientErr; err != nil {
		t.Errorf("long-timeout client, answered after the other timed out: %v", err)
	}
}

// TestSharedTransportRefusesRedirects checks NewHTTPClientWith keeps
// NewHTTPClient's refusal of redirects.
func TestSharedTransportRefusesRedirects(t *testing.T) {
	rec := &recorder{reply: func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/token", http.StatusTemporaryRedirect)
	}}
	c := newTestClient(t, rec)
	tr := NewTransport(nil)
	t.Cleanup(tr.CloseIdleConnections)
	c.HTTPClient = NewHTTPClientWith(tr, 0)
	_, err := c.ClientCredentials(context.Background(), nil)
	var oe *Error
	if !errors.As(err, &oe) || oe.Retryable || !errors.Is(err, errRedirect) {
		t.Fatalf("err = %v, want the redirect refused", err)
	}
}

// TestTransportSettings pins what NewTransport and NewHTTPClient set.
func TestTransportSettings(t *testing.T) {
	roots := x509.NewCertPool()
	tr := NewTransport(roots)
	switch {
	case tr.Proxy == nil:
		t.Error("no proxy from the environment")
	case tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 || tr.TLSClientConfig.RootCAs != roots:
		t.Errorf("TLS config %+v, want TLS 1.2 or later against the given roots", tr.TLSClientConfig)
	case tr.MaxConnsPerHost != MaxConnsPerHost || tr.TLSHandshakeTimeout == 0 || tr.IdleConnTimeout == 0:
		t.Errorf("MaxConnsPerHost %d, TLSHandshakeTimeout %v, IdleConnTimeout %v",
			tr.MaxConnsPerHost, tr.TLSHandshakeTimeout, tr.IdleConnTimeout)
	}
	hc := NewHTTPClientWith(tr, 0)
	if hc.Timeout != DefaultTimeout || hc.Transport != tr {
		t.Errorf("NewHTTPClientWith(tr, 0): timeout %v, transport shared %v", hc.Timeout, hc.Transport == tr)
	}
	own := NewHTTPClient(nil, time.Minute)
	if otr, ok := own.Transport.(*http.Transport); !ok || own.Timeout != time.Minute || otr.ResponseHeaderTimeout != time.Minute {
		t.Errorf("NewHTTPClient(nil, 1m): timeout %v, transport %T", own.Timeout, own.Transport)
	}
}
