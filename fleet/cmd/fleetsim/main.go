// Command fleetsim runs the full fleet simulations of package fleet (a
// thousand hosts on a Free identity domain, ten thousand on a Premium
// one, through a cold start and a 30-minute outage) and prints their
// tables in Markdown, with the wall time and memory each took. Cold
// starts use the start jitter of fleet.StartJitterFor unless -start-jitter
// says otherwise.
//
//	go run ./fleet/cmd/fleetsim
//	go run ./fleet/cmd/fleetsim -fleets premium=10000 -scenarios start -start-jitter 0 -cpuprofile cpu.out
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokd/tokd/cache"
	"github.com/tokd/tokd/emulator"
	"github.com/tokd/tokd/fleet"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "fleetsim: %v\n", err)
		os.Exit(1)
	}
}

var domains = map[string]emulator.DomainType{
	"free":        emulator.DomainFree,
	"oracle-apps": emulator.DomainOracleApps,
	"premium":     emulator.DomainPremium,
}

// The steady scenario measures from steadyFrom to steadyTo, once the
// refresh times of the restored tokens have mixed.
const (
	steadyFrom = time.Hour
	steadyTo   = 5 * time.Hour
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleetsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		fleets      = fs.String("fleets", "free=1000,premium=10000", "comma-separated `domain=hosts` (domains: free, oracle-apps, premium)")
		scenarios   = fs.String("scenarios", "start,outage", "comma-separated scenarios: start (all hosts restart at once, empty caches), outage, steady (no outage, measured from the first hour to the fifth)")
		retryAfter  = fs.String("retry-after", "both", "whether 429s carry Retry-After: yes, no or both")
		seed        = fs.Uint64("seed", 1, "random seed of the simulation")
		sweep       = fs.Duration("sweep", 10*time.Second, "simulated interval of the invariant check over every host (0: every step)")
		outageAt    = fs.Duration("outage-at", 5*time.Minute, "start of the outage")
		outageFor   = fs.Duration("outage", 30*time.Minute, "length of the outage")
		jitter      = fs.Float64("start-jitter", fleet.StartJitterFactor, "cache.Options.StartJitter as a `multiple` of the floor (hosts / limit per minute); 0: none")
		spread      = fs.Float64("start-spread", 0, "start the hosts uniformly over this `multiple` of the floor (hosts / limit per minute) instead of at once")
		lifetime    = fs.Duration("lifetime", time.Hour, "lifetime of the tokens")
		baseBackoff = fs.Duration("base-backoff", 0, "cache.Options.BaseBackoff (0: the default)")
		rlBackoff   = fs.Duration("rate-limit-backoff", 0, "cache.Options.RateLimitBackoff (0: the default)")
		maxBackoff  = fs.Duration("max-backoff", 0, "cache.Options.MaxBackoff (0: the default)")
		cpuprofile  = fs.String("cpuprofile", "", "write a CPU profile to `file`")
		memprofile  = fs.String("memprofile", "", "write a heap profile to `file` after the runs")
		verbose     = fs.Bool("v", false, "print the targets of each run and the first violations")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	if *jitter < 0 || *spread < 0 {
		return errors.New("-start-jitter and -start-spread must not be negative")
	}
	var ras []bool
	switch *retryAfter {
	case "both":
		ras = []bool{false, true}
	case "yes":
		ras = []bool{true}
	case "no":
		ras = []bool{false}
	default:
		return fmt.Errorf("-retry-after: %q is not yes, no or both", *retryAfter)
	}
	var tune func(int, *cache.Options)
	if *baseBackoff > 0 || *maxBackoff > 0 || *rlBackoff > 0 {
		tune = func(_ int, o *cache.Options) {
			o.BaseBackoff, o.MaxBackoff, o.RateLimitBackoff = *baseBackoff, *maxBackoff, *rlBackoff
		}
	}

	var configs []fleet.Config
	for _, sc := range strings.Split(*scenarios, ",") {
		if sc != "start" && sc != "outage" && sc != "steady" {
			return fmt.Errorf("-scenarios: unknown scenario %q", sc)
		}
		for _, f := range strings.Split(*fleets, ",") {
			name, n, ok := strings.Cut(f, "=")
			typ, known := domains[name]
			hosts, err := strconv.Atoi(n)
			if !ok || !known || err != nil || hosts <= 0 {
				return fmt.Errorf("-fleets: %q is not domain=hosts", f)
			}
			for _, ra := range ras {
				c := fleet.Config{
					Hosts:      hosts,
					Limit:      emulator.DomainRateLimit(typ),
					Lifetime:   *lifetime,
					Seed:       *seed,
					SweepEvery: *sweep,
					Tune:       tune,
				}
				c.Limit.RetryAfter = ra
				c.Name = fmt.Sprintf("%s %s %d", sc, name, hosts)
				switch {
				case sc == "outage":
					// The fleet's start_jitter, as configured for cold
					// starts, also sets its retry ceiling (package cache,
					// "Failures").
					c.Warm, c.OutageAt, c.OutageFor = true, *outageAt, *outageFor
					c.StartJitter = time.Duration(*jitter * float64(c.Floor()))
					if *jitter != fleet.StartJitterFactor {
						c.Name += fmt.Sprintf(" jitter %.3gx", *jitter)
					}
				case sc == "steady":
					c.Warm, c.Horizon = true, steadyTo
				default:
					c.StartJitter = time.Duration(*jitter * float64(c.Floor()))
					if *jitter != fleet.StartJitterFactor {
						c.Name += fmt.Sprintf(" jitter %.3gx", *jitter)
					}
					if *spread > 0 {
						c.StartSpread = time.Duration(*spread * float64(c.Floor()))
						c.Name += fmt.Sprintf(" spread %.3gx", *spread)
					}
				}
				configs = append(configs, c)
			}
		}
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	fmt.Fprintf(stdout, "machine: %s, %d CPUs, %s/%s, %s\n\n", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	var starts, outages, steadies []*fleet.Result
	var mem []string
	for _, c := range configs {
		if err := ctx.Err(); err != nil {
			return err
		}
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		r, err := fleet.Run(c)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		mem = append(mem, fmt.Sprintf("%s, Retry-After %v: wall %v, %d steps, allocated %d MiB, heap in use at the end %d MiB, max RSS so far %d MiB",
			c.Name, c.Limit.RetryAfter, r.Wall.Round(time.Millisecond), r.Steps,
			(after.TotalAlloc-before.TotalAlloc)>>20, after.HeapInuse>>20, maxRSS()>>20))
		fmt.Fprintln(stderr, mem[len(mem)-1])
		if *verbose {
			for _, t := range r.Targets() {
				fmt.Fprintf(stderr, "  target %s met=%v: %s\n", t.Name, t.Met, t.Detail)
			}
			for _, p := range r.Problems {
				fmt.Fprintf(stderr, "  violation: %s\n", p)
			}
			if c.OutageFor > 0 {
				fmt.Fprintln(stderr, "  requests until recovery, by the host's state when it sent them (S: the held token's servable life left; C: the retry ceiling):")
				if err := fleet.WriteRecoveryClasses(stderr, r); err != nil {
					return err
				}
			}
		}
		switch {
		case c.OutageFor > 0:
			outages = append(outages, r)
		case c.Warm:
			steadies = append(steadies, r)
		default:
			starts = append(starts, r)
		}
		runtime.GC()
	}
	if len(starts) > 0 {
		fmt.Fprintf(stdout, "Cold start: every host restarts at the same moment with an empty cache and a start jitter of %.3gx the floor.\n", *jitter)
		fmt.Fprintln(stdout)
		if err := fleet.WriteStartTable(stdout, starts); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	if len(outages) > 0 {
		fmt.Fprintf(stdout, "Outage: every host holds a token part-way through its life; every request fails (503) from %v for %v.\n\n", *outageAt, *outageFor)
		if err := fleet.WriteOutageTable(stdout, outages); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	if len(steadies) > 0 {
		fmt.Fprintf(stdout, "Steady state: every host holds a token part-way through its life; requests from %v to %v.\n\n", steadyFrom, steadyTo)
		if err := fleet.WriteSteadyTable(stdout, steadies, steadyFrom, steadyTo); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintln(stdout, "Hosts x profiles at which steady-state refreshes alone reach the per-minute limit:")
	fmt.Fprintln(stdout)
	if err := fleet.WriteCapacityTable(stdout, []time.Duration{5 * time.Minute, 15 * time.Minute, time.Hour, 8 * time.Hour}); err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	for _, m := range mem {
		fmt.Fprintln(stdout, "- "+m)
	}
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			return err
		}
	}
	return nil
}

// maxRSS returns the process's peak resident set size in bytes.
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss << 10
}

// cpuModel returns the CPU's model name from /proc/cpuinfo, or "unknown CPU".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
