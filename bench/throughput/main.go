// Command throughput measures tokd's socket API under concurrent load: 1,
// 8 and 64 clients (by default) each asking for the cached demo token in
// a loop, in four modes:
//
//   - keepalive: net/http's client over the Unix socket, reusing its
//     connections: what a Go program using net/http sees;
//   - keepalive-raw: a lean load generator like wrk: one raw connection
//     per client, a pre-built request, the answer's status line and
//     Content-Length parsed and its body checked to hold the token, all
//     connections driven by one epoll loop (-loops), so that tokd's
//     throughput is not capped by an expensive client on the same cores;
//   - newconn: tokd's client package (tokctl's own code: a blocking
//     syscall socket per request, Connection: close);
//   - newconn-raw: the same exchange as newconn from an epoll loop, a new
//     connection per request with nothing else around it.
//
// It prints tokens/s, the latency percentiles and the CPU spent per token
// by tokd and by the clients.
//
//	go run ./bench/throughput                      # tokd in a child process
//	go run ./bench/throughput -cpuprofile tokd.pprof -modes newconn -clients 64
//	go run ./bench/throughput -socket /run/tokd/tokd.sock -profile ci
//
// Without -socket it starts tokd itself: it re-executes itself as a child
// that serves a dev emulator on loopback and runs daemon.Run, as tokd
// --dev does, with its own GOMAXPROCS, so that tokd's CPU is measured
// apart from the clients' (from /proc/PID/stat) and -cpuprofile profiles
// tokd alone. Client and server share the machine's cores: on 2 cores
// the figures are what one host serves while it also runs its callers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/bench/internal/benchenv"
	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/daemon"
	"github.com/tokd/tokd/emulator"
)

// serveEnv marks the child process that runs tokd.
const serveEnv = "TOKD_BENCH_SERVE"

func main() {
	var err error
	if os.Getenv(serveEnv) != "" {
		err = serve()
	} else {
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		os.Exit(1)
	}
}

// serve is the child: tokd on a dev emulator until SIGTERM. It writes
// "READY socket\n" to stdout once tokd serves the demo token.
func serve() error {
	cpuprofile := flag.String("cpuprofile", "", "")
	dir := flag.String("dir", "", "")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	env, err := benchenv.Start(*dir, emulator.Options{})
	if err != nil {
		return err
	}
	defer env.Close()
	socket := filepath.Join(*dir, "s", "tokd.sock")
	path := filepath.Join(*dir, "tokd.toml")
	if err := env.WriteConfig(path, benchenv.Config{Socket: socket, StateDir: filepath.Join(*dir, "state"), RefreshToken: true}); err != nil {
		return err
	}
	cfg, _, err := config.Load(path, config.Options{})
	if err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	return daemon.Run(ctx, daemon.Options{
		Config: cfg,
		Logger: log,
		Ready: func(socket string) {
			go func() {
				// Fetch the first token before the clients start.
				if _, err := (&client.Client{Socket: socket}).Token("demo"); err != nil {
					log.Error("first token", "err", err)
					stop()
					return
				}
				fmt.Printf("READY %s\n", socket)
			}()
		},
	})
}

// The modes, in the order of the table.
var modes = []string{"keepalive", "keepalive-raw", "newconn", "newconn-raw"}

// scenario is one load pattern.
type scenario struct {
	mode    string // one of modes
	clients int
}

// result is what one scenario measured.
type result struct {
	scenario
	tokens     int
	errors     int
	elapsed    time.Duration
	lat        []time.Duration // sorted
	serverCPU  time.Duration
	clientCPU  time.Duration
	firstError error
}

func run() error {
	socket := flag.String("socket", "", "measure the tokd serving this socket instead of starting one")
	profile := flag.String("profile", "demo", "the profile whose token to ask for")
	clientsFlag := flag.String("clients", "1,8,64", "numbers of concurrent clients")
	modesFlag := flag.String("modes", strings.Join(modes, ","), "keepalive (net/http, reused connections), keepalive-raw (raw connections from an epoll loop), newconn (tokd's client, one connection per request), newconn-raw (a raw connection per request from an epoll loop)")
	loops := flag.Int("loops", 1, "epoll loops (threads) of the raw modes; the clients are spread over them")
	floorRuns := flag.Int("floor", 100000, "exchanges to measure the kernel's floor with after the table; 0 skips it")
	duration := flag.Duration("duration", 5*time.Second, "measured time per scenario")
	warmup := flag.Duration("warmup", time.Second, "unmeasured time before each scenario")
	cpuprofile := flag.String("cpuprofile", "", "write tokd's CPU profile over all scenarios here (only when this program starts tokd)")
	flag.Parse()

	var scenarios []scenario
	for _, m := range strings.Split(*modesFlag, ",") {
		if !slices.Contains(modes, m) {
			return fmt.Errorf("-modes: unknown mode %q", m)
		}
		for _, c := range strings.Split(*clientsFlag, ",") {
			n, err := strconv.Atoi(c)
			if err != nil || n < 1 {
				return fmt.Errorf("-clients: %q", c)
			}
			scenarios = append(scenarios, scenario{m, n})
		}
	}

	var serverPID int
	if *socket == "" {
		dir, err := os.MkdirTemp("", "tokd-tp-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := os.Mkdir(filepath.Join(dir, "s"), 0o700); err != nil {
			return err
		}
		args := []string{"-dir", dir}
		if *cpuprofile != "" {
			abs, err := filepath.Abs(*cpuprofile)
			if err != nil {
				return err
			}
			args = append(args, "-cpuprofile", abs)
		}
		child, sock, err := startServer(args)
		if err != nil {
			return err
		}
		defer func() {
			child.Process.Signal(syscall.SIGTERM)
			child.Wait()
		}()
		*socket, serverPID = sock, child.Process.Pid
	} else {
		pid, err := peerPID(*socket)
		if err != nil {
			return err
		}
		serverPID = pid
	}

	// The raw modes check each answer for the token itself.
	first, err := (&client.Client{Socket: *socket}).Token(*profile)
	if err != nil {
		return fmt.Errorf("first token: %w", err)
	}
	fmt.Printf("tokd throughput over %s: %s per scenario after %s of warm-up; GOMAXPROCS %d (clients) on %d CPUs; raw modes: %d epoll loop(s)\n\n",
		*socket, *duration, *warmup, runtime.GOMAXPROCS(0), runtime.NumCPU(), *loops)
	var results []result
	for _, sc := range scenarios {
		r, err := measure(sc, *socket, *profile, first.AccessToken, *loops, serverPID, *warmup, *duration)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	printTable(os.Stdout, results)
	if *floorRuns > 0 {
		fmt.Printf("\nthe kernel's floor: CPU per exchange of a 100-byte request and a %d-byte answer (about a token answer's size), both ends in one thread, blocking system calls, %d exchanges:\n",
			len(first.AccessToken)+300, *floorRuns)
		for _, newConn := range []bool{false, true} {
			d, err := floor(newConn, 100, len(first.AccessToken)+300, *floorRuns)
			if err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			what := "kept connection"
			if newConn {
				what = "new connection (socket, connect, accept4, close on both ends)"
			}
			fmt.Printf("  %-62s %6.1f µs\n", what, float64(d)/1e3)
		}
	}
	return nil
}

// startServer runs this program as tokd's child process and waits for it
// to serve.
func startServer(args []string) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	ready := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		var line []byte
		for {
			n, err := out.Read(buf)
			line = append(line, buf[:n]...)
			if i := slices.Index(line, '\n'); i >= 0 {
				ready <- string(line[:i])
				io.Copy(io.Discard, out)
				return
			}
			if err != nil {
				ready <- ""
				return
			}
		}
	}()
	select {
	case l := <-ready:
		if sock, ok := strings.CutPrefix(l, "READY "); ok {
			return cmd, sock, nil
		}
	case <-time.After(60 * time.Second):
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, "", errors.New("tokd did not become ready within 60s")
}

// peerPID returns the pid of the process serving socket (SO_PEERCRED).
func peerPID(socket string) (int, error) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if credErr != nil {
		return 0, credErr
	}
	return int(cred.Pid), nil
}

// procCPU returns the user + system time of process pid so far.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name in parentheses may hold spaces: fields count from
	// after its closing parenthesis; utime and stime are fields 14 and 15.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// requester asks for one token; each client goroutine has its own.
type requester func() error

func newRequester(mode, socket, profile string, transport *http.Transport) requester {
	if mode == "newconn" {
		c := &client.Client{Socket: socket, Timeout: 10 * time.Second}
		return func() error {
			tok, err := c.Token(profile)
			if err == nil && tok.AccessToken == "" {
				err = errors.New("empty token")
			}
			return err
		}
	}
	hc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	url := "http://tokd" + apitype.PathPrefix + "token/" + profile
	return func() error {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return err
		}
		req.Header.Set(apitype.VersionHeader, apitype.Version)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return err
	}
}

// stats is what one client goroutine or one epoll loop recorded.
type stats struct {
	lat      []time.Duration
	errors   int
	firstErr error
}

func (st *stats) record(d time.Duration, err error) {
	if err != nil {
		st.errors++
		if st.firstErr == nil {
			st.firstErr = err
		}
		return
	}
	st.lat = append(st.lat, d)
}

func measure(sc scenario, socket, profile, token string, loops int, serverPID int, warmup, duration time.Duration) (result, error) {
	var recording, stop atomic.Bool
	var wg sync.WaitGroup
	var per []stats
	switch sc.mode {
	case "keepalive-raw", "newconn-raw":
		// The clients spread over the loops.
		loops = min(loops, sc.clients)
		per = make([]stats, loops)
		for i := range loops {
			n := sc.clients/loops + btoi(i < sc.clients%loops)
			lg := &rawLoad{socket: socket, profile: profile, token: token, clients: n,
				newConn: sc.mode == "newconn-raw", recording: &recording, stop: &stop, st: &per[i]}
			if err := lg.open(); err != nil {
				return result{}, err
			}
			wg.Go(lg.run)
		}
	default:
		transport := &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			MaxIdleConns:        sc.clients,
			MaxIdleConnsPerHost: sc.clients,
			DisableCompression:  true,
		}
		defer transport.CloseIdleConnections()
		per = make([]stats, sc.clients)
		for i := range sc.clients {
			wg.Go(func() {
				do := newRequester(sc.mode, socket, profile, transport)
				st := &per[i]
				for !stop.Load() {
					t0 := time.Now()
					err := do()
					d := time.Since(t0)
					if recording.Load() {
						st.record(d, err)
					}
				}
			})
		}
	}
	time.Sleep(warmup)
	s0, err := procCPU(serverPID)
	if err != nil {
		return result{}, err
	}
	c0 := selfCPU()
	recording.Store(true)
	t0 := time.Now()
	time.Sleep(duration)
	recording.Store(false)
	elapsed := time.Since(t0)
	s1, _ := procCPU(serverPID)
	c1 := selfCPU()
	stop.Store(true)
	wg.Wait()

	r := result{scenario: sc, elapsed: elapsed, serverCPU: s1 - s0, clientCPU: c1 - c0}
	for _, st := range per {
		r.lat = append(r.lat, st.lat...)
		r.errors += st.errors
		if r.firstError == nil {
			r.firstError = st.firstErr
		}
	}
	r.tokens = len(r.lat)
	slices.Sort(r.lat)
	return r, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// quantile is the nearest-rank q-quantile of sorted.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }

func printTable(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "mode          \tclients\ttokens\ttokens/s\tp50 ms\tp99 ms\tmax ms\terrors\ttokd CPU µs/token\tclient CPU µs/token\ttokd alone on %d CPUs, tokens/s\t\n", runtime.NumCPU())
	for _, r := range results {
		perTok := func(d time.Duration) string {
			if r.tokens == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f", float64(d)/1e3/float64(r.tokens))
		}
		maxLat := time.Duration(0)
		if len(r.lat) > 0 {
			maxLat = r.lat[len(r.lat)-1]
		}
		// What tokd could serve if its clients cost nothing: every CPU
		// spent at tokd's measured cost per token.
		ceiling := "-"
		if r.tokens > 0 && r.serverCPU > 0 {
			ceiling = fmt.Sprintf("%.0f", float64(runtime.NumCPU())*float64(time.Second)*float64(r.tokens)/float64(r.serverCPU))
		}
		fmt.Fprintf(tw, "%-14s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n", r.mode, r.clients, r.tokens,
			float64(r.tokens)/r.elapsed.Seconds(), ms(quantile(r.lat, 0.5)), ms(quantile(r.lat, 0.99)), ms(maxLat),
			r.errors, perTok(r.serverCPU), perTok(r.clientCPU), ceiling)
	}
	tw.Flush()
	for _, r := range results {
		if r.firstError != nil {
			fmt.Fprintf(w, "%s x%d: first error: %v\n", r.mode, r.clients, r.firstError)
		}
	}
	fmt.Fprintln(w)
	for _, r := range results {
		if r.clients != 64 {
			continue
		}
		rate := float64(r.tokens) / r.elapsed.Seconds()
		p99 := quantile(r.lat, 0.99)
		verdict := "met"
		if rate < 50000 || p99 >= 5*time.Millisecond || r.errors > 0 {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "target at 64 clients, %s: >= 50000 tokens/s with p99 < 5 ms: %.0f tokens/s, p99 %s ms: %s\n",
			r.mode, rate, ms(p99), verdict)
	}
}
