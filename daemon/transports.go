package daemon

import (
	"crypto/x509"
	"net/http"

	"github.com/tokd/tokd/oauth"
)

// transports holds the HTTP transports of token requests: one per
// distinct CA pool (a profile's ca_file, or none), shared by every profile
// that trusts it. One transport per profile kept an idle keep-alive
// connection per profile to the same token endpoint: 1,000 profiles held
// 1,000 connections, 2,000 goroutines and 20-40 MiB. A shared one keeps
// at most oauth.MaxConnsPerHost per endpoint, and each profile's client
// keeps its own timeout.
//
// A transport outlives the configuration that made it when the next one
// trusts the same roots, so a reload keeps its warm connections. Run and
// reload use it from one goroutine at a time; it has no lock.
type transports struct {
	gen  int // the configuration being assigned
	list []*sharedTransport
}

type sharedTransport struct {
	roots *x509.CertPool // nil: the system roots alone
	tr    *http.Transport
	gen   int // the last configuration that used it
}

// next starts the assignment of a new configuration's profiles.
func (t *transports) next() { t.gen++ }

// forRoots returns the transport for requests that trust roots: the one
// of an equal pool when there is one, else a new one.
func (t *transports) forRoots(roots *x509.CertPool) *http.Transport {
	for _, s := range t.list {
		if s.roots == roots || (s.roots != nil && roots != nil && s.roots.Equal(roots)) {
			s.gen = t.gen
			return s.tr
		}
	}
	s := &sharedTransport{roots: roots, tr: oauth.NewTransport(roots), gen: t.gen}
	t.list = append(t.list, s)
	return s.tr
}

// dropUnused forgets the transports that no profile of the configuration
// assigned last uses, and closes their idle connections. Call it once the
// cache has the new profiles: a request still in flight on a dropped
// transport finishes, and its connection then closes when idle for the
// transport's IdleConnTimeout.
func (t *transports) dropUnused() {
	kept := t.list[:0]
	for _, s := range t.list {
		if s.gen == t.gen {
			kept = append(kept, s)
			continue
		}
		s.tr.CloseIdleConnections()
	}
	clear(t.list[len(kept):])
	t.list = kept
}

// closeIdle closes the idle connections of every transport, at shutdown.
func (t *transports) closeIdle() {
	for _, s := range t.list {
		s.tr.CloseIdleConnections()
	}
}
