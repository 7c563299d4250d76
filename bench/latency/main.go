// Command latency measures the whole-process latency of commands: it runs
// each one exactly N times, interleaved (every round runs every command
// once, in a shuffled order, so that drift in the machine's state spreads
// over all of them alike), and prints one table with the median, p90, p99
// and the CPU each process used.
//
// A run is timed from just before the process is spawned until wait4 has
// reaped it, so the figure is what a caller such as git or kubectl pays:
// fork/exec, the dynamic loader if any, runtime start, the work, exit.
// Standard input comes from a file and standard output goes to /dev/null,
// so the harness runs no goroutine copying bytes while the child runs.
//
//	latency -spec commands.json -n 1000 -ref 'trivial Go binary' \
//	    -target 'tokctl get demo / git credential-cache get <= 1.0'
//
// The spec is a JSON array of {"name", "argv", "stdin", "env", "expect"}:
// argv[0] must be an absolute path; stdin is the text fed to every run;
// env adds NAME=VALUE entries; expect, when set, must occur in the
// standard output of the first warm-up run. A run that exits non-zero
// fails the whole measurement.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// command is one entry of the spec.
type command struct {
	Name   string   `json:"name"`
	Argv   []string `json:"argv"`
	Stdin  string   `json:"stdin"`
	Env    []string `json:"env"`
	Expect string   `json:"expect"`

	stdinPath string
	env       []string
	wall      []time.Duration
	cpu       []time.Duration // user + system of the child
}

// target is a ratio of two commands' medians and its bound.
type target struct {
	num, den string
	bound    float64
}

type targetFlags []target

func (t *targetFlags) String() string { return fmt.Sprint(*t) }

// Set parses "NUM / DEN <= BOUND".
func (t *targetFlags) Set(s string) error {
	ratio, bound, ok := strings.Cut(s, "<=")
	num, den, ok2 := strings.Cut(ratio, " / ")
	if !ok || !ok2 {
		return fmt.Errorf("target %q: want 'NAME / NAME <= BOUND'", s)
	}
	b, err := strconv.ParseFloat(strings.TrimSpace(bound), 64)
	if err != nil {
		return fmt.Errorf("target %q: %w", s, err)
	}
	*t = append(*t, target{strings.TrimSpace(num), strings.TrimSpace(den), b})
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "latency:", err)
		os.Exit(1)
	}
}

func run() error {
	specPath := flag.String("spec", "", "JSON file listing the commands")
	n := flag.Int("n", 1000, "timed runs of each command")
	warmup := flag.Int("warmup", 20, "untimed runs of each command first")
	ref := flag.String("ref", "", "name of the command the ratio column divides by")
	rawOut := flag.String("raw", "", "write every run's wall time (ns) as JSON to this file")
	seed := flag.Uint64("seed", 1, "seed of the order shuffle")
	var targets targetFlags
	flag.Var(&targets, "target", "'NAME / NAME <= BOUND' on the medians; repeatable")
	flag.Parse()
	if *specPath == "" || *n < 1 {
		return errors.New("usage: latency -spec FILE [-n RUNS] [-ref NAME] [-target 'A / B <= X']...")
	}
	cmds, err := loadSpec(*specPath)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "latency-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i, c := range cmds {
		c.stdinPath = filepath.Join(tmp, fmt.Sprintf("stdin-%d", i))
		if err := os.WriteFile(c.stdinPath, []byte(c.Stdin), 0o600); err != nil {
			return err
		}
		c.env = mergeEnv(os.Environ(), c.Env)
		c.wall = make([]time.Duration, 0, *n)
		c.cpu = make([]time.Duration, 0, *n)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()

	// Warm up: page cache, daemons' first requests, CPU frequency. The
	// first run of each command is checked against its expectation.
	for _, c := range cmds {
		if err := check(c, tmp); err != nil {
			return err
		}
		for range *warmup {
			if _, _, err := spawn(c, devnull); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
		}
	}

	rng := rand.New(rand.NewPCG(*seed, 0))
	order := make([]int, len(cmds))
	for i := range order {
		order[i] = i
	}
	start := time.Now()
	for range *n {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			c := cmds[i]
			wall, cpu, err := spawn(c, devnull)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			c.wall = append(c.wall, wall)
			c.cpu = append(c.cpu, cpu)
		}
	}
	elapsed := time.Since(start)

	if *rawOut != "" {
		raw := map[string][]int64{}
		for _, c := range cmds {
			for _, d := range c.wall {
				raw[c.Name] = append(raw[c.Name], d.Nanoseconds())
			}
		}
		data, _ := json.Marshal(raw)
		if err := os.WriteFile(*rawOut, data, 0o644); err != nil {
			return err
		}
	}
	return report(os.Stdout, cmds, *n, elapsed, *ref, targets)
}

// mergeEnv returns base with the NAME=VALUE entries of extra, an entry of
// extra replacing base's entry of the same name. (os.StartProcess passes
// the list as it is, and C programs' getenv takes the first match.)
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	override := map[string]bool{}
	for _, kv := range extra {
		name, _, _ := strings.Cut(kv, "=")
		override[name] = true
	}
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		if !override[name] {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

func loadSpec(path string) ([]*command, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cmds []*command
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cmds); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := map[string]bool{}
	for _, c := range cmds {
		switch {
		case c.Name == "" || seen[c.Name]:
			return nil, fmt.Errorf("%s: command names must be present and unique (%q)", path, c.Name)
		case len(c.Argv) == 0 || !filepath.IsAbs(c.Argv[0]):
			return nil, fmt.Errorf("%s: %s: argv[0] must be an absolute path", path, c.Name)
		}
		seen[c.Name] = true
	}
	return cmds, nil
}

// check runs c once with its output captured, and fails unless it exits 0
// and prints what the spec expects.
func check(c *command, tmp string) error {
	out, err := os.CreateTemp(tmp, "out-")
	if err != nil {
		return err
	}
	defer out.Close()
	_, _, err = spawn(c, out)
	got, _ := os.ReadFile(out.Name())
	if err != nil {
		return fmt.Errorf("%s: %w (output %q)", c.Name, err, got)
	}
	if c.Expect != "" && !bytes.Contains(got, []byte(c.Expect)) {
		return fmt.Errorf("%s: output %.200q does not contain %q", c.Name, got, c.Expect)
	}
	return nil
}

// spawn runs c once with stdout and stderr to out and returns its wall
// time and its CPU time (user + system). (Its peak RSS is not reported:
// Go spawns with CLONE_VFORK|CLONE_VM, so the kernel's ru_maxrss of the
// child is the harness's own.)
func spawn(c *command, out *os.File) (time.Duration, time.Duration, error) {
	stdin, err := os.Open(c.stdinPath)
	if err != nil {
		return 0, 0, err
	}
	defer stdin.Close()
	attr := &os.ProcAttr{Env: c.env, Files: []*os.File{stdin, out, out}}
	t0 := time.Now()
	p, err := os.StartProcess(c.Argv[0], c.Argv, attr)
	if err != nil {
		return 0, 0, err
	}
	st, err := p.Wait()
	wall := time.Since(t0)
	if err != nil {
		return 0, 0, err
	}
	if !st.Success() {
		return 0, 0, fmt.Errorf("exited with %v", st)
	}
	var cpu time.Duration
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return wall, cpu, nil
}

// quantile returns the q-quantile of sorted by the nearest-rank method
// (the p99 of 1,000 runs is the 990th smallest); q = 0.5 of an even count
// is the mean of the two middle values.
func quantile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if q == 0.5 && n%2 == 0 {
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
	i := int(math.Ceil(q*float64(n))) - 1
	return sorted[min(max(i, 0), n-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }

func report(w io.Writer, cmds []*command, n int, elapsed time.Duration, ref string, targets []target) error {
	medians := map[string]time.Duration{}
	for _, c := range cmds {
		slices.Sort(c.wall)
		slices.Sort(c.cpu)
		medians[c.Name] = quantile(c.wall, 0.5)
	}
	fmt.Fprintf(w, "whole-process latency, %d runs of each command, interleaved (%s in all)\n\n", n, elapsed.Round(time.Second))
	// Names are padded by hand so that the right-aligned table keeps them
	// flush left.
	width := len("command")
	for _, c := range cmds {
		width = max(width, len(c.Name))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := fmt.Sprintf("%-*s", width, "command") + "\tmin ms\tmedian ms\tp90 ms\tp99 ms\tmax ms\tCPU median ms\t"
	if ref != "" {
		hdr += "median / ref\t"
	}
	fmt.Fprintln(tw, hdr)
	for _, c := range cmds {
		line := fmt.Sprintf("%-*s\t%s\t%s\t%s\t%s\t%s\t%s\t", width, c.Name,
			ms(c.wall[0]), ms(medians[c.Name]), ms(quantile(c.wall, 0.9)), ms(quantile(c.wall, 0.99)),
			ms(c.wall[len(c.wall)-1]), ms(quantile(c.cpu, 0.5)))
		if ref != "" {
			if d, ok := medians[ref]; ok && d > 0 {
				line += fmt.Sprintf("%.2f\t", float64(medians[c.Name])/float64(d))
			} else {
				line += "-\t"
			}
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ref != "" {
		fmt.Fprintf(w, "(ref: %s)\n", ref)
	}
	if len(targets) > 0 {
		fmt.Fprintln(w)
	}
	for _, t := range targets {
		num, ok1 := medians[t.num]
		den, ok2 := medians[t.den]
		if !ok1 || !ok2 || den == 0 {
			return fmt.Errorf("target %s / %s: no such command", t.num, t.den)
		}
		r := float64(num) / float64(den)
		verdict := "met"
		if r > t.bound {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "median %s / median %s = %.2f (target <= %.1f): %s\n", t.num, t.den, r, t.bound, verdict)
	}
	return nil
}
