package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokd/tokd/apitype"
)

// rawLoad is one epoll loop driving clients raw connections, as wrk
// drives its connections: each sends a pre-built request, waits for the
// whole answer, checks it and sends the next. Its per-token cost is the
// system calls of the exchange and a few microseconds of parsing, which
// leaves the cores to tokd.
type rawLoad struct {
	socket, profile, token string
	clients                int
	// newConn opens a connection per request (Connection: close, the
	// answer read to EOF), as tokctl does; otherwise connections are kept.
	newConn         bool
	recording, stop *atomic.Bool
	st              *stats

	epfd  int
	req   []byte
	want  []byte // the answer's body must hold this
	conns []rawConn
}

// rawConn is one client's connection and the answer it is reading.
type rawConn struct {
	fd   int // -1 between connections (newConn)
	sent time.Time
	buf  []byte
}

func (l *rawLoad) open() error {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	l.epfd = fd
	conn := ""
	if l.newConn {
		conn = "Connection: close\r\n"
	}
	l.req = fmt.Appendf(nil, "GET %stoken/%s HTTP/1.1\r\nHost: tokd\r\nUser-Agent: throughput\r\n%s: %s\r\n%s\r\n",
		apitype.PathPrefix, l.profile, apitype.VersionHeader, apitype.Version, conn)
	l.want = fmt.Appendf(nil, `"access_token":%q`, l.token)
	l.conns = make([]rawConn, l.clients)
	for i := range l.conns {
		l.conns[i] = rawConn{fd: -1, buf: make([]byte, 0, 4096)}
		if !l.newConn {
			if err := l.connect(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// connect opens connection i, registers it with the loop and sends the
// request. The connect itself blocks, which on a Unix socket lasts only
// while tokd's accept queue is full.
func (l *rawLoad) connect(i int) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	for {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: l.socket})
		if err != unix.EINTR {
			break
		}
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err == nil {
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)})
	}
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("connect %s: %w", l.socket, err)
	}
	l.conns[i].fd = fd
	l.conns[i].buf = l.conns[i].buf[:0]
	return l.send(i)
}

func (l *rawLoad) send(i int) error {
	c := &l.conns[i]
	c.sent = time.Now()
	n, err := unix.Write(c.fd, l.req)
	if err == nil && n < len(l.req) {
		err = errors.New("short write of a request")
	}
	return err
}

// run drives the connections until stop.
func (l *rawLoad) run() {
	// One thread polls, as a wrk thread does.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer unix.Close(l.epfd)
	defer func() {
		for _, c := range l.conns {
			if c.fd >= 0 {
				unix.Close(c.fd)
			}
		}
	}()
	if l.newConn {
		for i := range l.conns {
			l.restart(i, nil)
		}
	}
	events := make([]unix.EpollEvent, len(l.conns))
	for !l.stop.Load() {
		n, err := unix.EpollWait(l.epfd, events, 100)
		if err != nil && err != unix.EINTR {
			l.st.record(0, fmt.Errorf("epoll_wait: %w", err))
			return
		}
		for _, ev := range events[:max(n, 0)] {
			l.readable(int(ev.Fd))
		}
	}
}

// readable reads what connection i has and handles each whole answer.
func (l *rawLoad) readable(i int) {
	c := &l.conns[i]
	eof := false
	for {
		if len(c.buf) == cap(c.buf) {
			c.buf = append(c.buf, 0)[:len(c.buf)]
		}
		n, err := unix.Read(c.fd, c.buf[len(c.buf):cap(c.buf)])
		if err == unix.EAGAIN {
			break
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			l.restart(i, fmt.Errorf("read: %w", err))
			return
		}
		if n == 0 {
			eof = true
			break
		}
		c.buf = c.buf[:len(c.buf)+n]
		if !l.newConn {
			break // a kept connection's answer rarely needs a second read
		}
	}
	for {
		size, err := l.answer(c.buf, eof)
		if size == 0 && err == nil {
			if eof {
				l.restart(i, errors.New("connection closed before a whole answer"))
			}
			return
		}
		if l.recording.Load() {
			l.st.record(time.Since(c.sent), err)
		}
		if err != nil || l.newConn {
			l.restart(i, nil)
			return
		}
		c.buf = c.buf[:copy(c.buf, c.buf[size:])]
		if err := l.send(i); err != nil {
			l.restart(i, err)
			return
		}
	}
}

// restart closes connection i (after err, when not nil) and, unless the
// loop stops, opens it again and sends the next request.
func (l *rawLoad) restart(i int, err error) {
	c := &l.conns[i]
	if err != nil && l.recording.Load() {
		l.st.record(0, err)
	}
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	if l.stop.Load() {
		return
	}
	if err := l.connect(i); err != nil && l.recording.Load() {
		l.st.record(0, err)
	}
}

// answer looks for a whole answer at the start of b: the status line,
// the header up to its empty line, and Content-Length bytes of body. It
// returns the answer's size, 0 while it is incomplete, or an error for
// an answer that is not a 200 holding the token.
func (l *rawLoad) answer(b []byte, eof bool) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, nil
	}
	head := b[:end+2]
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) {
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return 0, fmt.Errorf("answer %q", line)
	}
	length := -1
	for rest := head; len(rest) > 0; {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil {
				return 0, fmt.Errorf("Content-Length %q", value)
			}
			length = n
		}
	}
	if length < 0 {
		return 0, errors.New("answer without Content-Length")
	}
	size := end + 4 + length
	if len(b) < size {
		return 0, nil
	}
	if !bytes.Contains(b[end+4:size], l.want) {
		return 0, errors.New("the answer does not hold the token")
	}
	return size, nil
}

// floor measures what the kernel alone charges for one exchange on a
// Unix socket, both ends in this thread with blocking system calls and
// nothing else: a request of reqSize bytes and an answer of respSize,
// over a kept connection or a new one (socket, connect, accept4, close on
// both ends). It returns the CPU time per exchange. No server can answer
// for less on this machine; a client and a server that share its cores
// cannot both run in less.
func floor(newConn bool, reqSize, respSize, n int) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir, err := os.MkdirTemp("", "tokd-floor-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	addr := &unix.SockaddrUnix{Name: filepath.Join(dir, "s")}
	ln, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, addr); err != nil {
		return 0, err
	}
	if err := unix.Listen(ln, 128); err != nil {
		return 0, err
	}
	req, resp, buf := make([]byte, reqSize), make([]byte, respSize), make([]byte, 64<<10)
	cli, srv := -1, -1
	dial := func() error {
		if cli, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err = unix.Connect(cli, addr); err != nil {
			return err
		}
		srv, _, err = unix.Accept4(ln, unix.SOCK_CLOEXEC)
		return err
	}
	readN := func(fd, n int) error {
		for got := 0; got < n; {
			m, err := unix.Read(fd, buf[:n-got])
			if err != nil {
				return err
			}
			if m == 0 {
				return io.ErrUnexpectedEOF
			}
			got += m
		}
		return nil
	}
	if !newConn {
		if err := dial(); err != nil {
			return 0, err
		}
		defer unix.Close(cli)
		defer unix.Close(srv)
	}
	c0 := threadCPU()
	for range n {
		if newConn {
			if err := dial(); err != nil {
				return 0, err
			}
		}
		if _, err := unix.Write(cli, req); err != nil {
			return 0, err
		}
		if err := readN(srv, reqSize); err != nil {
			return 0, err
		}
		if _, err := unix.Write(srv, resp); err != nil {
			return 0, err
		}
		if newConn {
			unix.Close(srv)
		}
		if err := readN(cli, respSize); err != nil {
			return 0, err
		}
		if newConn {
			if m, err := unix.Read(cli, buf); m != 0 || err != nil {
				return 0, fmt.Errorf("no EOF after the answer: %d, %v", m, err)
			}
			unix.Close(cli)
		}
	}
	return (threadCPU() - c0) / time.Duration(n), nil
}

// threadCPU returns this thread's CPU time so far.
func threadCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
