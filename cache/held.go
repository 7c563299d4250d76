package cache

import "github.com/tokd/tokd/token"

// Held returns the profile's token when the cache holds one it serves
// now: Get's answer when Get would neither wait nor fetch. It never
// waits, never starts a fetch and needs no context, so that the socket
// server answers the common case without creating one. ok is false for
// an unknown profile, no token, or a token past its serving margin; the
// caller then asks Get. Like Get's, the token is the caller's copy and
// never carries the refresh token.
func (c *Cache) Held(name string) (tok *token.Token, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, found := c.entries[name]
	if !found || !e.serves(c.clock.Now()) {
		return nil, false
	}
	return servable(e.tok), true
}
