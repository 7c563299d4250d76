// Command tokd is the token daemon: it obtains OAuth2 access tokens for
// the configured profiles, keeps them fresh, and serves them over a Unix
// socket to the callers each profile allows.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/daemon"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// errReported is a failure whose details run already wrote to stderr.
var errReported = errors.New("reported")

func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "tokd: %s\nrun 'tokd --help' for usage\n", ue.msg)
		return exitUsage
	case errors.Is(err, errReported):
		return exitFailure
	}
	fmt.Fprintf(stderr, "tokd: %v\n", err)
	return exitFailure
}

// flags are tokd's command-line settings.
type flags struct {
	config    string
	check     bool
	dev       bool
	socket    string
	stateDir  string
	logLevel  string
	logFormat string
	version   bool
}

// usageHead is the start of tokd --help, in the man page's words.
const usageHead = `usage: tokd [--config file] [--socket path] [--state-dir dir]
            [--log-level level] [--log-format format]
       tokd [--config file] --check
       tokd --dev
       tokd --version

`

// parseFlags parses tokd's flags. On -h or --help it writes the help to
// stdout and returns flag.ErrHelp; a usage error is returned, not printed.
func parseFlags(args []string, stdout io.Writer) (*flags, error) {
	var f flags
	fs := flag.NewFlagSet("tokd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&f.config, "config", "", "configuration file (default "+defaultConfigPath()+")")
	fs.BoolVar(&f.check, "check", false, "validate the configuration, and the files it names, and exit")
	fs.BoolVar(&f.dev, "dev", false, "run against a built-in identity-domain emulator with a demo profile")
	fs.StringVar(&f.socket, "socket", "", "socket path (overrides the configuration)")
	fs.StringVar(&f.stateDir, "state-dir", "", "state directory (overrides the configuration)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error (default info)")
	fs.StringVar(&f.logFormat, "log-format", "", "text or json (default text; no timestamps under journald)")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeHelp(stdout, fs)
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if f.dev && f.check {
		return nil, &usageError{"--dev and --check exclude each other"}
	}
	return &f, nil
}

// flagArgs names the argument of each flag that takes one, as the man
// page does.
var flagArgs = map[string]string{
	"config": "file", "socket": "path", "state-dir": "dir", "log-level": "level", "log-format": "format",
}

// writeHelp writes tokd --help: the synopsis, then every flag spelt
// --name as in the man page, with its argument.
func writeHelp(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	b.WriteString(usageHead + "options:\n")
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if name, ok := flagArgs[f.Name]; ok {
			arg = name
		}
		left := "  --" + f.Name
		if arg != "" {
			left += " " + arg
		}
		fmt.Fprintf(&b, "%-22s %s\n", left, usage)
	})
	b.WriteString("\nSee tokd(8).\n")
	io.WriteString(w, b.String())
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if f.version {
		fmt.Fprintln(stdout, "tokd", version())
		return nil
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if f.dev {
		return runDev(ctx, f, stdout, log)
	}
	path := f.config
	if path == "" {
		path = defaultConfigPath()
	}
	copts := config.Options{CredentialsDirectory: os.Getenv("CREDENTIALS_DIRECTORY")}
	cfg, err := loadConfig(path, copts, stderr)
	if f.check {
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok (%d profiles)\n", path, len(cfg.Profiles))
		return nil
	}
	if err != nil {
		return err
	}
	ln, err := activatedListener()
	if err != nil {
		return err
	}
	opts := daemon.Options{
		Config: cfg,
		Reload: func() (*config.Config, error) {
			cfg, warnings, err := config.Load(path, copts)
			for _, w := range warnings {
				log.Warn(w.String())
			}
			return cfg, err
		},
		Socket:               f.socket,
		StateDir:             f.stateDir,
		CredentialsDirectory: copts.CredentialsDirectory,
		Listener:             ln,
		Logger:               log,
	}
	(&systemdNotifier{log: log}).hooks(&opts)
	return daemon.Run(ctx, opts)
}

// loadConfig loads and validates the configuration, printing warnings and
// every validation problem to stderr, one per line.
func loadConfig(path string, opts config.Options, stderr io.Writer) (*config.Config, error) {
	cfg, warnings, err := config.Load(path, opts)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "tokd: warning: %s\n", w)
	}
	switch {
	case err == nil:
		return cfg, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no configuration at %s: write one (see README.md), pass --config FILE, or try tokd --dev", path)
	}
	var verr *config.ValidationError
	if errors.As(err, &verr) {
		fmt.Fprintf(stderr, "tokd: %s is invalid:\n", path)
		for _, line := range strings.Split(strings.TrimRight(verr.Error(), "\n"), "\n") {
			fmt.Fprintf(stderr, "  %s\n", line)
		}
		return nil, errReported
	}
	var serr *config.SyntaxError
	if errors.As(err, &serr) {
		return nil, err // it names the file, line and column
	}
	return nil, fmt.Errorf("%s: %w", path, err)
}

// defaultConfigPath is /etc/tokd/tokd.toml for root, else
// $XDG_CONFIG_HOME/tokd/tokd.toml (~/.config/tokd/tokd.toml).
func defaultConfigPath() string {
	if os.Getuid() == 0 {
		return "/etc/tokd/tokd.toml"
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "/etc/tokd/tokd.toml"
	}
	return filepath.Join(dir, "tokd", "tokd.toml")
}

// newLogger logs to w: text by default, without timestamps when stderr
// goes to the journal (which stamps every line itself), or JSON.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, &usageError{fmt.Sprintf("--log-level: %q is not debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if stderrIsJournal() {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &usageError{fmt.Sprintf("--log-format: %q is not text or json", format)}
}

// stderrIsJournal reports whether stderr is the journal's stream:
// systemd sets JOURNAL_STREAM to its device and inode, which a shell or
// pipe in between would change.
func stderrIsJournal() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		return false
	}
	return dev == strconv.FormatUint(st.Dev, 10) && ino == strconv.FormatUint(st.Ino, 10)
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
