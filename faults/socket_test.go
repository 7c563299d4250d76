package faults_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/client"
)

// readHeaderTimeout is the time the daemon's socket server gives a
// request's head (readHeaderTimeout in daemon/httpserver.go).
const readHeaderTimeout = 5 * time.Second

// TestSocketAbuse holds 1,000 idle connections and 200 slowloris
// connections (one header byte every 20 ms) open on the daemon's socket,
// and meanwhile sends oversized headers, an oversized request line and
// oversized bodies. It proves that:
//   - every other caller is served: 50 gets from fresh clients during the
//     abuse all return the token, each within a second;
//   - the oversized requests are refused with 431 and 413, or (a body the
//     route does not read) answered and the connection closed;
//   - the daemon closes every idle and slowloris connection by itself once
//     ReadHeaderTimeout (5 s) has passed;
//   - the heap stays bounded during the abuse and returns to where it was.
func TestSocketAbuse(t *testing.T) {
	const idleConns, slowConns = 1000, 200
	raiseNoFile(t, 4*(idleConns+slowConns))
	e := newEnv(t, envOptions{})
	e.writeConfig(e.clientCredentialsProfile("ci"))
	d := e.start(nil)
	tok := d.get(t, "ci")
	socket := d.client.Socket
	base := heapInuse()

	start := time.Now()
	idle := make([]net.Conn, idleConns)
	for i := range idle {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		idle[i] = c
		defer c.Close()
	}
	slow := startSlowloris(t, socket, slowConns, 20*time.Millisecond)

	var wg sync.WaitGroup
	big := strings.Repeat("a", 1<<20)
	for _, tc := range []struct {
		name, head string
		body       int64 // bytes sent after the head
		want       int
	}{
		{"1 MiB header", "GET /v1/status HTTP/1.1\r\nHost: tokd\r\nX-Big: " + big + "\r\n\r\n", 0, http.StatusRequestHeaderFieldsTooLarge},
		{"1 MiB request line", "GET /v1/token/" + big + " HTTP/1.1\r\nHost: tokd\r\n\r\n", 0, http.StatusRequestHeaderFieldsTooLarge},
		{"8 MiB import body", fmt.Sprintf("POST /v1/token/ci/import HTTP/1.1\r\nHost: tokd\r\nContent-Length: %d\r\n\r\n", 8<<20), 8 << 20, http.StatusRequestEntityTooLarge},
		{"8 MiB chunked import body", "POST /v1/token/ci/import HTTP/1.1\r\nHost: tokd\r\nTransfer-Encoding: chunked\r\n\r\n", 8 << 20, http.StatusRequestEntityTooLarge},
		{"8 MiB body on a get", fmt.Sprintf("GET /v1/token/ci HTTP/1.1\r\nHost: tokd\r\nContent-Length: %d\r\n\r\n", 8<<20), 8 << 20, http.StatusOK},
	} {
		wg.Go(func() {
			status, closed, err := oversized(socket, tc.head, tc.body, strings.Contains(tc.head, "chunked"))
			switch {
			case err != nil:
				t.Errorf("%s: %v", tc.name, err)
			case status != tc.want:
				t.Errorf("%s: answered %d, want %d", tc.name, status, tc.want)
			case !closed:
				t.Errorf("%s: the daemon kept the connection open", tc.name)
			}
		})
	}

	// Other callers meanwhile.
	var worst time.Duration
	for i := range 50 {
		c := &client.Client{Socket: socket, Timeout: waitTimeout}
		t0 := time.Now()
		got, err := c.Token("ci")
		lat := time.Since(t0)
		worst = max(worst, lat)
		if err != nil || got.AccessToken != tok.AccessToken {
			t.Errorf("get %d during the abuse: %v", i, err)
		} else if lat > time.Second {
			t.Errorf("get %d during the abuse took %v", i, lat)
		}
	}
	if elapsed := time.Since(start); elapsed >= readHeaderTimeout {
		t.Fatalf("the gets ended %v after the abuse began, past ReadHeaderTimeout: they proved nothing about an ongoing abuse", elapsed)
	}
	wg.Wait()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	peak := m.HeapInuse
	if st, err := d.client.Status(); err != nil || len(st.Profiles) != 1 {
		t.Errorf("status during the abuse: %v", err)
	}

	// The daemon closes the idle connections by itself.
	var idleClosed []time.Duration
	for i, c := range idle {
		c.SetReadDeadline(start.Add(readHeaderTimeout + 10*time.Second))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection %d: read %d bytes, %v; want EOF once the daemon closes it", i, n, err)
		}
		idleClosed = append(idleClosed, time.Since(start))
		c.Close()
	}
	slowClosed := slow.wait(t)
	after := heapInuse()

	const mib = 1 << 20
	t.Logf("50 gets during the abuse, the slowest %v; heap in use %d MiB before, %d MiB during, %d MiB after",
		worst.Round(time.Millisecond), base/mib, peak/mib, after/mib)
	t.Logf("idle connections closed by the daemon after %v to %v; slowloris after %v to %v",
		slices.Min(idleClosed).Round(time.Millisecond), slices.Max(idleClosed).Round(time.Millisecond),
		slices.Min(slowClosed).Round(time.Millisecond), slices.Max(slowClosed).Round(time.Millisecond))
	for what, ds := range map[string][]time.Duration{"idle": idleClosed, "slowloris": slowClosed} {
		if last := slices.Max(ds); last > readHeaderTimeout+5*time.Second {
			t.Errorf("the daemon closed the last %s connection %v after it opened, want about %v", what, last, readHeaderTimeout)
		}
	}
	// Each open connection costs the daemon (and this process's client
	// side) a goroutine and buffers, some tens of KiB; 1,200 of them stay
	// far below 256 MiB.
	if peak > base+256*mib {
		t.Errorf("heap in use grew from %d to %d MiB during the abuse", base/mib, peak/mib)
	}
	if after > base+16*mib {
		t.Errorf("heap in use grew from %d to %d MiB after the abuse", base/mib, after/mib)
	}
	if got := d.get(t, "ci"); got.AccessToken != tok.AccessToken {
		t.Errorf("get after the abuse serves another token")
	}
}

// raiseNoFile raises the soft limit on open files to at least n, skipping
// the test when the hard limit is lower.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("RLIMIT_NOFILE hard limit %d is below the %d files this test opens", lim.Max, n)
	}
	old := lim
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("raising RLIMIT_NOFILE to %d: %v", n, err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// heapInuse returns the heap in use after two garbage collections (the
// second empties the sync.Pools, where net/http keeps its buffers).
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// oversized sends head and then body bytes (chunked if asked) on a new
// connection, while reading the answer. It returns the answer's status and
// whether the daemon closed the connection after it.
func oversized(socket, head string, body int64, chunked bool) (status int, closed bool, err error) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return 0, false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	go func() {
		// The daemon may answer and close before all is sent: write
		// errors are expected.
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		chunk := make([]byte, 64<<10)
		for sent := int64(0); sent < body; sent += int64(len(chunk)) {
			if chunked {
				if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
					return
				}
			} else if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		if chunked {
			io.WriteString(c, "0\r\n\r\n")
		}
	}()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, fmt.Errorf("reading the answer: %w", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, false, fmt.Errorf("reading the answer's body: %w", err)
	}
	resp.Body.Close()
	if v := resp.Header.Get(apitype.VersionHeader); v != apitype.Version && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		return 0, false, fmt.Errorf("answer %d without the API version header", resp.StatusCode)
	}
	// After the answer, the daemon closes the connection: EOF, or a reset
	// when it closed with unread input.
	_, err = br.ReadByte()
	return resp.StatusCode, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), nil
}

// slowloris is a set of connections each sending a request's header one
// byte at a time, never ending it.
type slowloris struct {
	start  time.Time
	done   chan struct{}
	closed []time.Duration // when the daemon closed each, after start
	err    error
}

// startSlowloris opens n connections and sends one header byte on each
// every interval until the daemon closes it.
func startSlowloris(t *testing.T, socket string, n int, interval time.Duration) *slowloris {
	t.Helper()
	s := &slowloris{start: time.Now(), done: make(chan struct{})}
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatalf("slowloris connection %d: %v", i, err)
		}
		conns[i] = c
	}
	go func() {
		defer close(s.done)
		header := []byte("GET /v1/token/ci HTTP/1.1\r\nHost: tokd\r\nX-Slow: ")
		tick := time.NewTicker(interval)
		defer tick.Stop()
		deadline := time.After(readHeaderTimeout + 10*time.Second)
		for sent := 0; len(s.closed) < n; sent++ {
			b := []byte{'a'}
			if sent < len(header) {
				b = header[sent : sent+1]
			}
			for i, c := range conns {
				if c == nil {
					continue
				}
				if _, err := c.Write(b); err != nil {
					s.closed = append(s.closed, time.Since(s.start))
					c.Close()
					conns[i] = nil
				}
			}
			select {
			case <-tick.C:
			case <-deadline:
				s.err = fmt.Errorf("%d of %d slowloris connections still open after %v", n-len(s.closed), n, readHeaderTimeout+10*time.Second)
				for _, c := range conns {
					if c != nil {
						c.Close()
					}
				}
				return
			}
		}
	}()
	return s
}

// wait waits until the daemon has closed every slowloris connection and
// returns when it closed each.
func (s *slowloris) wait(t *testing.T) []time.Duration {
	t.Helper()
	<-s.done
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.closed
}
