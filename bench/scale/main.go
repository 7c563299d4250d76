// Command scale runs tokd with many profiles of short-lived tokens against
// the identity-domain emulator and measures what that costs tokd: the CPU
// per refresh, its memory, and how long a restart with every token in the
// store takes to reach READY.
//
//	go build -trimpath -o /tmp/tokd ./cmd/tokd
//	go run ./bench/scale -tokd /tmp/tokd                 # 1,000 jwt-bearer profiles, 60 s tokens
//	go run ./bench/scale -tokd /tmp/tokd -refresh-token  # the same, renewed with the refresh_token grant
//
// The emulator runs in this process on loopback; tokd runs as a child
// process, as under systemd, with NOTIFY_SOCKET pointing at a datagram
// socket this program reads, so that start-to-READY is measured from the
// spawn to tokd's READY=1. The phases:
//
//  1. cold start: an empty state directory; READY, then the time until every
//     profile holds a token;
//  2. steady state: for -window, tokd's CPU (utime + stime from
//     /proc/PID/stat) against the token requests the emulator answered, its
//     RSS sampled every second, its open file descriptors and threads, and
//     how the refreshes bunch (the busiest second);
//  3. restarts: SIGTERM, then start again on the same state directory,
//     -restarts times: start-to-READY with every token restored from the
//     store (checked in tokd's log);
//  4. a breakdown of that start, timed in this process with tokd stopped:
//     configuration load, sealing key and store open, reading every record.
package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/bench/internal/benchenv"
	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/oauth"
	"github.com/tokd/tokd/source"
	"github.com/tokd/tokd/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

type options struct {
	tokd         string
	profiles     int
	expiry       int
	grant        string
	refreshToken bool
	window       time.Duration
	restarts     int
	keep         bool
}

func run() error {
	var o options
	flag.StringVar(&o.tokd, "tokd", "", "the tokd binary (go build -trimpath -o /tmp/tokd ./cmd/tokd)")
	flag.IntVar(&o.profiles, "profiles", 1000, "number of profiles")
	flag.IntVar(&o.expiry, "expiry", 60, "token lifetime in seconds (scope urn:opc:resource:expiry=N; the emulator's minimum is 60)")
	flag.StringVar(&o.grant, "grant", "jwt-bearer", "jwt-bearer or client_credentials")
	flag.BoolVar(&o.refreshToken, "refresh-token", false, "ask for refresh tokens (offline_access) and renew with them")
	flag.DurationVar(&o.window, "window", 60*time.Second, "steady-state measurement window")
	flag.IntVar(&o.restarts, "restarts", 5, "restarts timed with a full store")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (config, logs, state)")
	flag.Parse()
	if o.tokd == "" {
		return errors.New("-tokd is required: go build -trimpath -o /tmp/tokd ./cmd/tokd")
	}
	tokdPath, err := filepath.Abs(o.tokd)
	if err != nil {
		return err
	}
	o.tokd = tokdPath

	dir, err := os.MkdirTemp("", "tokd-scale-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "scale: working directory %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	env, err := benchenv.Start(dir, emulator.Options{History: -1})
	if err != nil {
		return err
	}
	defer env.Close()
	socket := filepath.Join(dir, "s", "tokd.sock")
	stateDir := filepath.Join(dir, "state")
	cfgPath := filepath.Join(dir, "tokd.toml")
	if err := os.Mkdir(filepath.Join(dir, "s"), 0o700); err != nil {
		return err
	}
	err = env.WriteConfig(cfgPath, benchenv.Config{
		Socket: socket, StateDir: stateDir, Profiles: o.profiles, Grant: o.grant, RefreshToken: o.refreshToken,
		Scopes: []string{emulator.ScopeMyScopes, emulator.ScopeExpiryPrefix + strconv.Itoa(o.expiry)},
	})
	if err != nil {
		return err
	}
	notify, err := listenNotify(filepath.Join(dir, "notify.sock"))
	if err != nil {
		return err
	}
	defer notify.Close()
	cl := &client.Client{Socket: socket, Timeout: 10 * time.Second}

	grant := o.grant
	if o.refreshToken {
		grant += ", then refresh_token"
	}
	fmt.Printf("tokd with %d profiles, %d s tokens (%s), against the emulator on loopback\n\n", o.profiles, o.expiry, grant)

	// 1. Cold start.
	d, err := startTokd(o, cfgPath, dir, notify, "cold")
	if err != nil {
		return err
	}
	defer d.kill()
	fmt.Printf("cold start (empty store): start-to-READY %s\n", ms(d.ready))
	fillStart := d.started
	if err := waitAllValid(cl, o.profiles, 120*time.Second); err != nil {
		return err
	}
	filled := time.Since(fillStart)
	req, failed := env.TokenRequests()
	fmt.Printf("every profile holding a token %s after start (%d token requests, %d refused)\n", filled.Round(time.Millisecond), req, failed)
	st0, err := procStatus(d.pid())
	if err != nil {
		return err
	}
	fmt.Printf("after the first fetches: RSS %s MiB, peak RSS %s MiB\n\n", mib(st0.rss), mib(st0.hwm))

	// 2. Steady state.
	time.Sleep(5 * time.Second)
	ss, err := steady(d, env, o.window)
	if err != nil {
		return err
	}
	printSteady(os.Stdout, o, ss)

	// 3. Restarts with a full store.
	if err := d.stop(); err != nil {
		return err
	}
	fmt.Printf("\nshutdown on SIGTERM: %s\n", ms(d.stopped))
	var readys []time.Duration
	for i := range o.restarts {
		before, _ := env.TokenRequests()
		r, err := startTokd(o, cfgPath, dir, notify, fmt.Sprintf("restart-%d", i+1))
		if err != nil {
			return err
		}
		after, _ := env.TokenRequests()
		restored, records, err := r.restored()
		if err != nil {
			r.kill()
			return err
		}
		fmt.Printf("restart %d: start-to-READY %s, %d of %d stored tokens restored, %d token requests before READY\n",
			i+1, ms(r.ready), restored, records, after-before)
		readys = append(readys, r.ready)
		if err := r.stop(); err != nil {
			return err
		}
	}
	if len(readys) > 0 {
		slices.Sort(readys)
		med := readys[len(readys)/2]
		verdict := "met"
		if med >= 250*time.Millisecond {
			verdict = "MISSED"
		}
		fmt.Printf("start-to-READY with %d sealed tokens: median %s, min %s, max %s (target < 250 ms): %s\n",
			o.profiles, ms(med), ms(readys[0]), ms(readys[len(readys)-1]), verdict)
	}

	// 4. Where a start's time goes.
	return breakdown(os.Stdout, cfgPath, stateDir, o.profiles)
}

// notifyListener receives sd_notify datagrams.
type notifyListener struct {
	path string
	conn *net.UnixConn
	msgs chan notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func listenNotify(path string) (*notifyListener, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	n := &notifyListener{path: path, conn: conn, msgs: make(chan notifyMsg, 64)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- notifyMsg{time.Now(), string(buf[:k])}
		}
	}()
	return n, nil
}

func (n *notifyListener) Close() error { return n.conn.Close() }

// waitReady returns when READY=1 arrived, or fails after timeout or when
// the process exits.
func (n *notifyListener) waitReady(exited <-chan struct{}, timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				return time.Time{}, errors.New("notify socket closed")
			}
			for _, l := range strings.Split(m.text, "\n") {
				if l == "READY=1" {
					return m.at, nil
				}
			}
		case <-exited:
			return time.Time{}, errors.New("tokd exited before READY=1")
		case <-deadline:
			return time.Time{}, fmt.Errorf("no READY=1 within %s", timeout)
		}
	}
}

// drain discards notifications left from an earlier process.
func (n *notifyListener) drain() {
	for {
		select {
		case <-n.msgs:
		default:
			return
		}
	}
}

// daemonProc is one tokd child process.
type daemonProc struct {
	cmd     *exec.Cmd
	socket  string
	log     string
	started time.Time
	ready   time.Duration
	stopped time.Duration
	exited  chan struct{}
}

func (d *daemonProc) pid() int { return d.cmd.Process.Pid }

func startTokd(o options, cfgPath, dir string, notify *notifyListener, name string) (*daemonProc, error) {
	logPath := filepath.Join(dir, "tokd-"+name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	notify.drain()
	cmd := exec.Command(o.tokd, "--config", cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify.path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d := &daemonProc{cmd: cmd, socket: filepath.Join(dir, "s", "tokd.sock"), log: logPath, exited: make(chan struct{})}
	d.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		cmd.Wait()
		close(d.exited)
	}()
	at, err := notify.waitReady(d.exited, 60*time.Second)
	if err != nil {
		d.kill()
		data, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("tokd (%s): %w\n%s", name, err, tail(data, 20))
	}
	d.ready = at.Sub(d.started)
	return d, nil
}

// stop sends SIGTERM and waits for the exit.
func (d *daemonProc) stop() error {
	t0 := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		d.stopped = time.Since(t0)
		return nil
	case <-time.After(20 * time.Second):
		d.kill()
		return errors.New("tokd did not stop within 20s of SIGTERM")
	}
}

func (d *daemonProc) kill() {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Kill()
		<-d.exited
	}
}

var restoredRE = regexp.MustCompile(`restored stored tokens.*restored=(\d+) records=(\d+)`)

// restored reads from tokd's log how many stored tokens it restored.
func (d *daemonProc) restored() (int, int, error) {
	data, err := os.ReadFile(d.log)
	if err != nil {
		return 0, 0, err
	}
	m := restoredRE.FindSubmatch(data)
	if m == nil {
		return 0, 0, fmt.Errorf("tokd's log has no 'restored stored tokens' line:\n%s", tail(data, 20))
	}
	a, _ := strconv.Atoi(string(m[1]))
	b, _ := strconv.Atoi(string(m[2]))
	return a, b, nil
}

func waitAllValid(cl *client.Client, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st, err := cl.Status()
		valid := 0
		if err == nil {
			for _, p := range st.Profiles {
				if p.ExpiresAt != nil && p.ExpiresAt.After(time.Now()) {
					valid++
				}
			}
			if valid >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d profiles hold a token after %s (last error: %v)", valid, n, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procStat is what /proc says about a process.
type procStat struct {
	cpu, user, sys time.Duration
	rss, hwm       int64 // KiB
	threads        int
	fds            int
}

func procStatus(pid int) (procStat, error) {
	var ps procStat
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ
	ps.user = time.Duration(ut) * time.Second / clkTck
	ps.sys = time.Duration(st) * time.Second / clkTck
	ps.cpu = ps.user + ps.sys
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSuffix(strings.TrimSpace(v), " kB")
		switch k {
		case "VmRSS":
			ps.rss, _ = strconv.ParseInt(v, 10, 64)
		case "VmHWM":
			ps.hwm, _ = strconv.ParseInt(v, 10, 64)
		case "Threads":
			ps.threads, _ = strconv.Atoi(v)
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	ps.fds = len(fds)
	return ps, nil
}

// steadyResult is what the steady-state window measured.
type steadyResult struct {
	window       time.Duration
	requests     int
	failed       int
	user, sys    time.Duration
	rssMax, hwm  int64
	rssEnd       int64
	threads, fds int
	peak         int
	mean         float64
	goMetrics    map[string]float64 // from tokd's /v1/metrics at the end
}

func steady(d *daemonProc, env *benchenv.Env, window time.Duration) (steadyResult, error) {
	var r steadyResult
	s0, err := procStatus(d.pid())
	if err != nil {
		return r, err
	}
	req0, fail0 := env.TokenRequests()
	t0 := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last procStat
	for time.Since(t0) < window {
		<-tick.C
		last, err = procStatus(d.pid())
		if err != nil {
			return r, fmt.Errorf("tokd during the window: %w", err)
		}
		r.rssMax = max(r.rssMax, last.rss)
	}
	t1 := time.Now()
	req1, fail1 := env.TokenRequests()
	r.window = t1.Sub(t0)
	r.requests, r.failed = req1-req0, fail1-fail0
	r.user, r.sys = last.user-s0.user, last.sys-s0.sys
	r.hwm, r.rssEnd, r.threads, r.fds = last.hwm, last.rss, last.threads, last.fds
	r.peak, r.mean = env.PeakPerSecond(t0.Truncate(time.Second).Add(time.Second), t1.Truncate(time.Second))
	r.goMetrics, err = goMetrics(d.socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scale: reading tokd's metrics: %v\n", err)
	}
	return r, nil
}

// goMetrics reads the Go runtime's gauges from tokd's /v1/metrics, which
// root and tokd's own user may read over the socket.
func goMetrics(socket string) (map[string]float64, error) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequest("GET", "http://tokd"+apitype.PathPrefix+"metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(apitype.VersionHeader, apitype.Version)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

func printSteady(w io.Writer, o options, r steadyResult) {
	fmt.Fprintf(w, "steady state over %s:\n", r.window.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	perRefresh := func(d time.Duration) string {
		if r.requests == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f µs", float64(d)/1e3/float64(r.requests))
	}
	cpu := r.user + r.sys
	fmt.Fprintf(tw, "  token requests (refreshes)\t%d (%d refused), %.1f/s on average, %d in the busiest second\n", r.requests, r.failed, r.mean, r.peak)
	fmt.Fprintf(tw, "  tokd CPU\t%s user + %s system = %.2f%% of one core\n", r.user, r.sys, 100*cpu.Seconds()/r.window.Seconds())
	fmt.Fprintf(tw, "  tokd CPU per refresh\t%s (user %s, system %s)\n", perRefresh(cpu), perRefresh(r.user), perRefresh(r.sys))
	verdict := "met"
	if max(r.rssMax, r.hwm) >= 64<<10 {
		verdict = "MISSED"
	}
	fmt.Fprintf(tw, "  tokd RSS\tlargest sample %s MiB, at the end %s MiB, peak (VmHWM, since start) %s MiB (target < 64 MiB): %s\n",
		mib(r.rssMax), mib(r.rssEnd), mib(r.hwm), verdict)
	fmt.Fprintf(tw, "  tokd threads, open files\t%d, %d\n", r.threads, r.fds)
	if m := r.goMetrics; m != nil {
		b := func(name string) string { return fmt.Sprintf("%.1f MiB", m[name]/(1<<20)) }
		fmt.Fprintf(tw, "  Go runtime (tokd's /v1/metrics)\t%.0f goroutines; heap in use %s, stacks %s, obtained from the OS %s; next GC at %s\n",
			m["go_goroutines"], b("go_memstats_heap_inuse_bytes"), b("go_memstats_stack_inuse_bytes"),
			b("go_memstats_sys_bytes"), b("go_memstats_next_gc_bytes"))
	}
	tw.Flush()
}

// breakdown times the parts of a start in this process: what tokd does
// before READY, less the runtime's start and the socket.
func breakdown(w io.Writer, cfgPath, stateDir string, n int) error {
	t0 := time.Now()
	cfg, _, err := config.Load(cfgPath, config.Options{})
	if err != nil {
		return fmt.Errorf("breakdown: %w", err)
	}
	t1 := time.Now()
	// As the daemon does: one transport per CA pool, shared.
	transports := map[*x509.CertPool]*http.Transport{}
	for _, name := range cfg.ProfileNames() {
		p := cfg.Profiles[name]
		tr, ok := transports[p.Creds.RootCAs]
		if !ok {
			tr = oauth.NewTransport(p.Creds.RootCAs)
			transports[p.Creds.RootCAs] = tr
		}
		_ = source.NewWithTransport(p, tr)
	}
	t2 := time.Now()
	key, _, err := store.LoadKey(stateDir, "")
	if err != nil {
		return fmt.Errorf("breakdown: %w", err)
	}
	st, err := store.Open(stateDir, store.Options{Key: key})
	if err != nil {
		return fmt.Errorf("breakdown: %w", err)
	}
	t3 := time.Now()
	recs, bad, err := st.LoadAll()
	t4 := time.Now()
	st.Close()
	if err != nil {
		return fmt.Errorf("breakdown: %w", err)
	}
	fmt.Fprintf(w, "\nwhere a start's time goes (the same steps in this process, tokd stopped):\n")
	for _, step := range []struct {
		d    time.Duration
		what string
	}{
		{t1.Sub(t0), fmt.Sprintf("config.Load: %d profiles (TOML, validation, every key file read and parsed)", n)},
		{t2.Sub(t1), fmt.Sprintf("a token source for every profile (%d shared transports, one per CA pool)", len(transports))},
		{t3.Sub(t2), "store.LoadKey + store.Open (bbolt, schema check, every value read)"},
		{t4.Sub(t3), fmt.Sprintf("store.LoadAll: %d records unsealed, %d unreadable", len(recs), len(bad))},
	} {
		fmt.Fprintf(w, "  %10s  %s\n", ms(step.d), step.what)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func mib(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }

func tail(data []byte, lines int) string {
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
