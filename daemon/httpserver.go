package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// httpServer serves the socket API: HTTP/1.1 (and 1.0) on tokd's Unix
// socket, in place of net/http's Server, which spent most of tokd's CPU
// per token (docs/BENCHMARKS.md, section 2).
//
// One goroutine per connection (a worker, kept for a later connection)
// reads requests into a buffer of its own, parses the head by hand under
// hard limits (httprequest.go), and answers in order, pipelined requests
// included. The hot route, GET
// /v1/token/{profile} for a token the cache holds, is answered from the
// parsed bytes with no http.Request and an answer encoded once per token
// (serveToken); every other request goes through the API's
// http.Handler with an http.Request and a buffered http.ResponseWriter
// built here (serveSlow), so that every route keeps its one
// implementation. The server's own refusals (400, 408, 417, 431, 500,
// 501, 505) carry the API version header, Cache-Control: no-store and an
// {"error": ...} body like every other answer. A body too large stays the
// import route's 413, as before: a route that reads no body answers
// whatever body comes with the request, and the connection then closes
// if the rest is too large to read and drop.
//
// Its limits and timeouts are those the daemon gave net/http: see
// newHTTPServer. Shutdown behaves as http.Server's: stop accepting, close
// idle connections, wait for the requests in flight.
type httpServer struct {
	api     *server      // the fast path's checks, cache and metrics
	handler http.Handler // every request the fast path does not answer
	log     *slog.Logger

	// readHeaderTimeout bounds the wait for a request's head from its
	// first byte (from the accept for a connection's first request).
	readHeaderTimeout time.Duration
	// readTimeout bounds reading a request's body.
	readTimeout time.Duration
	// writeTimeout bounds writing an answer.
	writeTimeout time.Duration
	// idleTimeout bounds the wait for the next request on a kept-alive
	// connection.
	idleTimeout time.Duration
	// maxHeaderBytes bounds a request's head: request line, header
	// fields and the empty line that ends them.
	maxHeaderBytes int
	// lingerTimeout bounds how long a connection closed on a request it
	// did not read to the end reads and drops what its client still sends
	// (lingerClose).
	lingerTimeout time.Duration

	date atomic.Pointer[dateLine] // the Date field of this second's answers

	// handoff passes a new connection to a worker waiting for one, so
	// that a connection per request costs neither a new goroutine nor
	// growing its stack again; idleWorkers counts those waiting, at most
	// maxIdleWorkers. stopWorkers, closed by Shutdown, ends them.
	handoff     chan *conn
	idleWorkers atomic.Int32
	stopWorkers chan struct{}

	inShutdown atomic.Bool
	mu         sync.Mutex // guards the fields below
	ln         net.Listener
	conns      map[*conn]struct{}
	drained    chan struct{} // closed when, after Shutdown began, the last connection closes
}

// newHTTPServer returns the socket server of s, with the limits the
// daemon gave net/http's Server: 16 KiB of head, 5 s for a head, 10 s for
// a body, the longest wait for a token plus 5 s for an answer, 60 s idle.
func newHTTPServer(s *server, log *slog.Logger) *httpServer {
	return &httpServer{
		api:               s,
		handler:           s.handler(),
		log:               log,
		readHeaderTimeout: 5 * time.Second,
		readTimeout:       10 * time.Second,
		writeTimeout:      s.getTimeout + 5*time.Second,
		idleTimeout:       60 * time.Second,
		maxHeaderBytes:    16 << 10,
		lingerTimeout:     500 * time.Millisecond,
		conns:             make(map[*conn]struct{}),
		handoff:           make(chan *conn),
		stopWorkers:       make(chan struct{}),
	}
}

// maxIdleWorkers bounds the goroutines kept waiting for a connection.
const maxIdleWorkers = 64

// work serves c, then each connection handed off to it, until no more
// workers are wanted.
func (s *httpServer) work(c *conn) {
	for {
		c.serve()
		if s.idleWorkers.Add(1) > maxIdleWorkers {
			s.idleWorkers.Add(-1)
			return
		}
		select {
		case c = <-s.handoff:
			s.idleWorkers.Add(-1)
		case <-s.stopWorkers:
			s.idleWorkers.Add(-1)
			return
		}
	}
}

// Serve accepts connections on ln and serves each in its own goroutine
// until Shutdown. It then returns http.ErrServerClosed, as http.Server's
// Serve does; any other error ends serving.
func (s *httpServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			if !temporaryAcceptError(err) {
				return err
			}
			// Out of file descriptors or memory: wait for some to be
			// released, as net/http does, rather than spin or stop.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accepting a connection on the socket failed; retrying", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c := &conn{srv: s, nc: nc}
		if !s.track(c) {
			nc.Close()
			continue
		}
		select {
		case s.handoff <- c:
		default:
			go s.work(c)
		}
	}
}

// temporaryAcceptError reports whether Accept may succeed again later.
func temporaryAcceptError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// track registers a new connection; it reports false once Shutdown has
// begun.
func (s *httpServer) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *httpServer) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.drained != nil && len(s.conns) == 0 {
		close(s.drained)
		s.drained = nil
	}
}

// Shutdown stops accepting, closes the idle connections, and waits for
// the others to finish the request they serve (each then closes, its
// answer saying Connection: close). A connection that has not sent its
// first request yet is given until its head timeout, as net/http gives
// it. Shutdown returns ctx's error if ctx ends first; the connections
// still open are then left to finish.
func (s *httpServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.inShutdown.Swap(true) {
		close(s.stopWorkers)
	}
	ln := s.ln
	// Every Shutdown waits on the one channel, so that a later call
	// (whose context may end sooner) does not take the drain from an
	// earlier one.
	drained := s.drained
	if drained == nil {
		drained = make(chan struct{})
		if len(s.conns) == 0 {
			close(drained)
		} else {
			s.drained = drained
		}
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	var err error
	if ln != nil {
		err = ln.Close()
	}
	for _, c := range conns {
		c.closeIfIdle()
	}
	select {
	case <-drained:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The states of a connection, for Shutdown: only an idle one, between
// requests, is closed under its client.
const (
	stateNew    int32 = iota // accepted, its first request not read yet
	stateActive              // reading or answering a request
	stateIdle                // waiting for its next request
	stateClosed
)

// readBufferSize is a connection's read buffer: a request for a token is
// about a hundred bytes. A larger head grows it to maxHeaderBytes.
const readBufferSize = 4 << 10

// flushAt is the size of pending answers (pipelined requests) past which
// they are written before the next request is read.
const flushAt = 64 << 10

// connBuffers are a connection's buffers, kept in a pool for the next
// connection: a connection per request would otherwise grow new ones
// every time.
type connBuffers struct {
	read   []byte
	out    []byte
	fields []headerField
}

var connBufferPool = sync.Pool{New: func() any {
	return &connBuffers{read: make([]byte, readBufferSize), out: make([]byte, 0, 4<<10), fields: make([]headerField, 0, 16)}
}}

// conn is one connection and the state of the request it serves. Only its
// own goroutine touches it, but for state and nc, which Shutdown uses.
type conn struct {
	srv   *httpServer
	nc    net.Conn
	state atomic.Int32
	bufs  *connBuffers // from connBufferPool; its read buffer may have been outgrown

	cred *PeerCred       // the peer's credentials; nil when unreadable
	ctx  context.Context // carries cred to the handlers

	buf     []byte // buf[r:w] is read and not consumed
	r, w    int
	scanned int    // where headEnd resumes in buf[r:w]
	out     []byte // answers not yet written
	scratch []byte // a handler's answer

	accepted  time.Time
	rd, wd    time.Time // the read and write deadlines last set
	bodyStart time.Time // when the current request's body was first read from the socket
	broken    bool      // a write failed: nothing more can be sent
	linger    bool      // the client may still be sending a request the server did not read to the end

	head requestHead
	body requestBody
	bg   backgroundRead

	profile string // the profile the fast path last served, kept to reuse its name
}

// serve serves the connection until it closes, authorising its requests
// by its SO_PEERCRED.
func (c *conn) serve() {
	c.run(withPeerCred(context.Background(), c.nc))
}

// run serves the connection until it closes; ctx carries the peer's
// credentials, if known.
func (c *conn) run(ctx context.Context) {
	defer c.close()
	defer c.recoverPanic()
	c.accepted = time.Now()
	c.bufs = connBufferPool.Get().(*connBuffers)
	c.buf, c.out, c.head.fields = c.bufs.read, c.bufs.out[:0], c.bufs.fields[:0]
	c.ctx = ctx
	c.cred, _ = peerCredFrom(ctx)
	for first := true; c.serveOne(first); first = false {
	}
}

// recoverPanic, deferred, turns a panic outside a handler (the parser,
// the fast path, the cache's Held it calls) into a 500 that ends the
// connection, not the daemon: net/http recovered it for every
// connection, and Held was called under its recover before the fast path.
func (c *conn) recoverPanic() {
	v := recover()
	if v == nil {
		return
	}
	buf := make([]byte, 16<<10)
	buf = buf[:runtime.Stack(buf, false)]
	c.srv.log.Error("panic serving a socket connection", "panic", fmt.Sprint(v), "stack", string(buf))
	c.writeError(http.StatusInternalServerError, "internal error")
}

// serveOne reads one request and answers it; it reports whether the
// connection serves another.
func (c *conn) serveOne(first bool) bool {
	n, rerr, ok := c.readHead(first)
	if !ok {
		return false
	}
	if rerr != nil {
		c.srv.log.Debug("socket request refused", "status", rerr.status, "err", rerr.msg)
		c.writeError(rerr.status, rerr.msg)
		c.linger = true
		return false
	}
	c.r += n // the head's slices stay valid until the next fill
	c.body.reset(c, &c.head)
	c.bodyStart = time.Time{}
	keep := !c.head.close && !c.srv.inShutdown.Load()
	if !c.serveToken(keep) {
		keep = c.serveSlow(keep)
	}
	if keep && len(c.out) >= flushAt {
		c.flush()
	}
	return keep && !c.broken
}

func (c *conn) close() {
	c.flush()
	if c.linger && !c.broken {
		c.lingerClose()
	}
	c.nc.Close()
	c.state.Store(stateClosed)
	c.srv.forget(c)
	if cap(c.out) <= 16<<10 {
		c.bufs.out = c.out[:0]
	}
	if cap(c.head.fields) <= 64 {
		c.bufs.fields = c.head.fields[:0]
	}
	connBufferPool.Put(c.bufs)
	c.bufs, c.buf, c.out, c.head.fields = nil, nil, nil, nil
}

// lingerClose ends the writing half of a connection the server closes
// while its client may still be sending (a head too large, a body not
// read to the end), then reads and drops what comes until the client
// closes or lingerTimeout passes, as net/http's closeWriteAndWait waits:
// closed at once, the client's writes fail (EPIPE) and it never reads the
// answer that says why.
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(c.srv.lingerTimeout))
	for c.r, c.w = 0, 0; ; {
		if _, err := c.nc.Read(c.buf); err != nil {
			return
		}
	}
}

// closeIfIdle closes the connection if it waits for a request; Shutdown
// calls it.
func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.nc.Close()
	}
}

// readHead waits until a whole request head is buffered and parses it
// into c.head. It returns the head's length, or the error to answer with;
// ok is false when the connection is to close without an answer: the
// client closed it or stayed idle past the timeout, or shutdown began.
func (c *conn) readHead(first bool) (n int, rerr *requestError, ok bool) {
	var headStart time.Time // when the head began to arrive; zero while no byte is buffered
	if first {
		headStart = c.accepted
	}
	for {
		if c.r < c.w {
			b := c.buf[c.r:c.w]
			if n := headEnd(b, &c.scanned); n > 0 {
				if n > c.srv.maxHeaderBytes {
					return 0, errHeadTooLarge, true
				}
				return n, c.head.parse(b[:n]), true
			}
			if len(b) >= c.srv.maxHeaderBytes {
				return 0, errHeadTooLarge, true
			}
			if headStart.IsZero() {
				headStart = time.Now()
			}
		}
		// Answers to pipelined requests go out before waiting for more.
		if err := c.flush(); err != nil {
			return 0, nil, false
		}
		idle := c.r == c.w && !first
		if idle {
			c.setReadDeadline(time.Now().Add(c.srv.idleTimeout))
			c.state.Store(stateIdle)
			if c.srv.inShutdown.Load() {
				return 0, nil, false
			}
		} else {
			c.setReadDeadline(headStart.Add(c.srv.readHeaderTimeout))
		}
		err := c.fill()
		if idle && !c.state.CompareAndSwap(stateIdle, stateActive) {
			return 0, nil, false // Shutdown closed it
		}
		if err != nil {
			if c.r < c.w && isTimeout(err) {
				return 0, errHeadTimeout, true
			}
			return 0, nil, false
		}
	}
}

// fill reads once from the connection into the buffer, making room
// first: it moves the unconsumed bytes to the front, or grows the buffer
// to maxHeaderBytes. Callers never ask it to fill a full buffer of that
// size.
func (c *conn) fill() error {
	switch {
	case c.r == c.w:
		c.r, c.w, c.scanned = 0, 0, 0
	case c.w == len(c.buf) && c.r > 0:
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	case c.w == len(c.buf):
		nb := make([]byte, max(c.srv.maxHeaderBytes, 2*len(c.buf)))
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readBody reads some of the request's body into p: buffered bytes first,
// then from the connection, within the body's read timeout.
func (c *conn) readBody(p []byte) (int, error) {
	if c.r == c.w {
		c.bodyDeadline()
		if len(p) >= len(c.buf) {
			return c.nc.Read(p)
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.w])
	c.r += n
	return n, nil
}

// readLine returns the next line of a chunked body, without its line end;
// a line of max bytes or more, its end included, is an error.
func (c *conn) readLine(max int) ([]byte, error) {
	for {
		if i := bytes.IndexByte(c.buf[c.r:c.w], '\n'); i >= 0 && i < max {
			line := c.buf[c.r : c.r+i]
			c.r += i + 1
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		}
		if c.w-c.r >= max {
			return nil, errMalformedChunk
		}
		c.bodyDeadline()
		if err := c.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

func (c *conn) bodyDeadline() {
	if c.bodyStart.IsZero() {
		c.bodyStart = time.Now()
	}
	c.setReadDeadline(c.bodyStart.Add(c.srv.readTimeout))
}

// setReadDeadline sets the read deadline to t, but leaves one at most a
// second earlier in place: a kept-alive connection then moves its idle
// deadline once a second rather than once a request (a timer update each).
func (c *conn) setReadDeadline(t time.Time) {
	if d := t.Sub(c.rd); d < 0 || d > time.Second {
		c.rd = t
		c.nc.SetReadDeadline(t)
	}
}

// flush writes the pending answers.
func (c *conn) flush() error {
	if c.broken {
		return net.ErrClosed
	}
	if len(c.out) == 0 {
		return nil
	}
	if t := time.Now().Add(c.srv.writeTimeout); t.Sub(c.wd) > time.Second {
		c.wd = t
		c.nc.SetWriteDeadline(t)
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	if cap(c.out) > 4*flushAt {
		c.out = nil // a large answer's buffer is not kept
	}
	if err != nil {
		c.broken = true
	}
	return err
}

// aLongTimeAgo is a deadline in the past: it interrupts a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// backgroundRead watches, while a handler waits (for a token fetch, say),
// for the client closing its connection, as net/http does, so that the
// request's context ends and the wait with it. It reads at most one byte:
// the start of a pipelined request, kept for the next readHead.
type backgroundRead struct {
	done chan struct{} // nil when no read runs; closed when it returned
	b    [1]byte
	n    int
	err  error
}

// startBackgroundRead starts the read; cancel ends the request's
// context if the client goes away. Nothing starts while the request's
// body or a pipelined request is unread: the handler owns those bytes.
func (c *conn) startBackgroundRead(cancel context.CancelFunc) {
	if c.bg.done != nil || c.body.pending() || c.r < c.w || c.broken {
		return
	}
	c.setReadDeadline(time.Now().Add(c.srv.idleTimeout))
	done := make(chan struct{})
	c.bg.done = done
	go func() {
		defer close(done)
		c.bg.n, c.bg.err = c.nc.Read(c.bg.b[:])
		if c.bg.n == 0 && c.bg.err != nil && !isTimeout(c.bg.err) {
			cancel()
		}
	}()
}

// stopBackgroundRead ends the read once the handler returned. It reports
// whether the client closed the connection meanwhile.
func (c *conn) stopBackgroundRead() (gone bool) {
	if c.bg.done == nil {
		return false
	}
	c.nc.SetReadDeadline(aLongTimeAgo)
	<-c.bg.done
	c.bg.done = nil
	c.rd = aLongTimeAgo // the next wait sets its own deadline
	if c.bg.n == 1 {
		c.r, c.w, c.scanned = 0, 1, 0
		c.buf[0] = c.bg.b[0]
		return false
	}
	return c.bg.err != nil && !isTimeout(c.bg.err)
}

// requestContext is the context of a request on the slow path: the
// connection's, ended when the handler returns or, once something waits
// on Done, when the client closes the connection. Watching costs a
// goroutine and a read, so it starts only for a handler that waits.
type requestContext struct {
	context.Context // a cancelable child of the connection's context
	c               *conn
	cancel          context.CancelFunc
	watch           sync.Once
}

func (r *requestContext) Done() <-chan struct{} {
	r.watch.Do(func() { r.c.startBackgroundRead(r.cancel) })
	return r.Context.Done()
}

// dateLine is the Date field of the answers of one second.
type dateLine struct {
	unix int64
	line []byte // "Date: ...\r\n"
}

// dateField returns the Date field for now, formatted once a second.
func (s *httpServer) dateField(now time.Time) []byte {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.unix == sec {
		return d.line
	}
	line := now.UTC().AppendFormat([]byte("Date: "), http.TimeFormat)
	d := &dateLine{unix: sec, line: append(line, "\r\n"...)}
	s.date.Store(d)
	return d.line
}
