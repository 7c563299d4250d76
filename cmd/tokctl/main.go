// Command tokctl is tokd's thin client: it prints tokens for shells and
// scripts, and asks the daemon to refresh, forget or import them.
//
// Exit codes: 0 ok, 1 failure (message on stderr), 2 usage, 3 daemon
// unreachable.
//
// tokctl starts on every git, kubectl and docker call, so what it links
// is part of its cost: every linked package's initialisation and the
// page faults of a larger binary are paid by every process, whatever
// command it runs (docs/BENCHMARKS.md, section 1). It therefore links
// neither encoding/json, fmt, flag, net/url nor os/exec; their small
// replacements (internal/jsonlite, flags.go, output.go) are tested
// against the originals. cmd/deps_test.go keeps it that way.
package main

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/internal/errtext"
)

// Exit codes, part of tokctl's interface.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitUnreachable = 3
)

func main() {
	args := os.Args[1:]
	if base(os.Args[0]) == "docker-credential-tokd" {
		// docker runs its helpers by this name: docker-credential-tokd get.
		args = append([]string{"docker-credential"}, args...)
	}
	os.Exit(exitCode(run(args, os.Stdin, os.Stdout, os.Stderr), os.Stderr))
}

// usageError is a command line tokctl does not understand.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// badUsage returns a usageError saying what is wrong with the command line.
func badUsage(msg string) error { return &usageError{msg} }

// base returns the last element of a slash-separated path.
func base(path string) string {
	path = strings.TrimRight(path, "/")
	return path[strings.LastIndexByte(path, '/')+1:]
}

// errSilent is a failure already reported on stderr.
var errSilent = errors.New("")

// exitCode reports err on stderr, with a hint where one helps, and maps it
// to tokctl's exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		io.WriteString(stderr, "tokctl: "+ue.msg+"\n"+usage)
		return exitUsage
	case errors.Is(err, errSilent):
		return exitFailure
	case errors.Is(err, client.ErrUnreachable):
		io.WriteString(stderr, "tokctl: "+err.Error()+"\nhint: start it with `systemctl start tokd` (or `systemctl --user start tokd`),\nhint: or run `tokd --config FILE`; set --socket or TOKD_SOCKET if it listens elsewhere\n")
		return exitUnreachable
	case errors.Is(err, client.ErrForbidden):
		io.WriteString(stderr, "tokctl: "+err.Error()+"\nhint: the profile's allowed_uids/allowed_gids decide who may read its token\n")
		return exitFailure
	}
	io.WriteString(stderr, "tokctl: "+err.Error()+"\n")
	return exitFailure
}

const usage = `usage: tokctl [--socket PATH] COMMAND [ARGS]

commands:
  get PROFILE [--json | --header]   print the profile's access token
  status [--json]                   show every profile you may see
  refresh PROFILE                   refresh the token now
  forget PROFILE                    drop the token; the next get fetches anew
  import PROFILE FILE               import a tokens<n>.tok file from the OCI Console
  exec [--env NAME] PROFILE -- COMMAND [ARGS...]
                                    run COMMAND with the token in $NAME (default TOKD_ACCESS_TOKEN)
  help                              print this usage; so do -h and --help, before or after a command

credential helpers (called by the tools, not by hand):
  git-credential get|store|erase    git: credential.helper = '' then '!tokctl git-credential'
  kubectl-credential PROFILE        kubectl: users[].user.exec
  docker-credential get|list|store|erase|version
                                    docker: credHelpers, or run as docker-credential-tokd

The socket is --socket, else $TOKD_SOCKET, else /run/tokd/tokd.sock for
root and $XDG_RUNTIME_DIR/tokd/tokd.sock for everyone else.
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	global := newFlagSet("tokctl")
	socket := global.String("socket", "") // path of tokd's socket
	if err := global.Parse(args); err != nil {
		if errors.Is(err, errHelp) {
			_, err := io.WriteString(stdout, usage)
			return err
		}
		return badUsage(err.Error())
	}
	args = global.Args()
	if len(args) == 0 {
		return badUsage("no command")
	}
	c := &client.Client{Socket: socketPath(*socket)}
	err := runCommand(c, args[0], args[1:], stdin, stdout, stderr)
	if errors.Is(err, errHelp) {
		// -h or --help after the command, as before it.
		_, err = io.WriteString(stdout, usage)
	}
	return err
}

// runCommand runs one command; errHelp means -h or --help was given.
func runCommand(c *client.Client, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	switch cmd {
	case "get":
		return cmdGet(c, args, stdout)
	case "status":
		return cmdStatus(c, args, stdout)
	case "refresh":
		return cmdRefresh(c, args, stdout)
	case "forget":
		return cmdForget(c, args)
	case "import":
		return cmdImport(c, args, stdout)
	case "git-credential":
		return cmdGitCredential(c, args, stdin, stdout, stderr)
	case "kubectl-credential":
		return cmdKubectlCredential(c, args, stdout)
	case "docker-credential":
		return cmdDockerCredential(c, args, stdin, stdout)
	case "exec":
		return cmdExec(c, args)
	case "help":
		_, err := io.WriteString(stdout, usage)
		return err
	}
	return badUsage("unknown command " + strconv.Quote(cmd))
}

func socketPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv("TOKD_SOCKET"); env != "" {
		return env
	}
	return apitype.DefaultSocket(os.Getuid(), os.Getenv("XDG_RUNTIME_DIR"))
}

// parse parses a subcommand's flags, allowing them before or after its
// positional arguments, and checks the number of positional arguments.
func parse(fs *flagSet, args []string, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, errHelp) {
				return nil, err
			}
			return nil, badUsage(fs.name + ": " + err.Error())
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != len(names) {
		if len(names) == 0 {
			return nil, badUsage(fs.name + " takes no arguments")
		}
		return nil, badUsage(fs.name + " takes " + strings.Join(names, " "))
	}
	return pos, nil
}

func cmdGet(c *client.Client, args []string, stdout io.Writer) error {
	fs := newFlagSet("get")
	asJSON := fs.Bool("json")   // print profile, access_token, token_type, expires_at as JSON
	header := fs.Bool("header") // print an Authorization header line
	pos, err := parse(fs, args, "PROFILE")
	if err != nil {
		return err
	}
	if *asJSON && *header {
		return badUsage("get: --json and --header exclude each other")
	}
	tok, err := c.Token(pos[0])
	if err != nil {
		return err
	}
	return printToken(stdout, tok, *asJSON, *header)
}

func printToken(w io.Writer, tok *apitype.Token, asJSON, header bool) error {
	var err error
	switch {
	case asJSON:
		tok.ExpiresAt = tok.ExpiresAt.UTC()
		var b []byte
		if b, err = appendTokenJSON(make([]byte, 0, 128+len(tok.AccessToken)), tok); err == nil {
			err = writeIndented(w, b)
		}
	case header:
		_, err = io.WriteString(w, "Authorization: "+tok.TokenType+" "+tok.AccessToken+"\n")
	default:
		_, err = io.WriteString(w, tok.AccessToken+"\n")
	}
	return err
}

func cmdStatus(c *client.Client, args []string, stdout io.Writer) error {
	fs := newFlagSet("status")
	asJSON := fs.Bool("json") // print the status as JSON
	if _, err := parse(fs, args); err != nil {
		return err
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := appendStatusJSON(nil, st)
		if err != nil {
			return err
		}
		return writeIndented(stdout, b)
	}
	if len(st.Profiles) == 0 {
		_, err := io.WriteString(stdout, "no profiles you may see\n")
		return err
	}
	var b strings.Builder
	row := func(profile, state, expires, last, next, lastErr string) {
		b.WriteString(pad(profile, 20) + " " + pad(state, 10) + " " + pad(expires, 20) + " " +
			pad(last, 20) + " " + pad(next, 20) + " " + lastErr + "\n")
	}
	row("PROFILE", "STATE", "EXPIRES", "LAST REFRESH", "NEXT REFRESH", "LAST ERROR")
	for _, p := range st.Profiles {
		lastErr := p.LastError
		if lastErr != "" && p.LastErrorAt != nil {
			lastErr = stamp(p.LastErrorAt) + " " + lastErr
		}
		if p.StoreError != "" {
			lastErr = strings.TrimSpace(lastErr + " (not saved: " + p.StoreError + ")")
		}
		row(p.Profile, p.State, stamp(p.ExpiresAt), stamp(p.LastRefresh), stamp(p.NextRefresh), lastErr)
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

func stamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func cmdRefresh(c *client.Client, args []string, stdout io.Writer) error {
	pos, err := parse(newFlagSet("refresh"), args, "PROFILE")
	if err != nil {
		return err
	}
	tok, err := c.Refresh(pos[0])
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, tok.Profile+": refreshed, expires "+tok.ExpiresAt.UTC().Format(time.RFC3339)+"\n")
	return err
}

func cmdForget(c *client.Client, args []string) error {
	pos, err := parse(newFlagSet("forget"), args, "PROFILE")
	if err != nil {
		return err
	}
	return c.Forget(pos[0])
}

func cmdImport(c *client.Client, args []string, stdout io.Writer) error {
	pos, err := parse(newFlagSet("import"), args, "PROFILE", "FILE")
	if err != nil {
		return err
	}
	data, err := readBounded(pos[1], apitype.MaxRequestBody)
	if err != nil {
		return err
	}
	tok, err := c.Import(pos[0], data)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, tok.Profile+": imported, expires "+tok.ExpiresAt.UTC().Format(time.RFC3339)+"\n")
	return err
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, errtext.Wrap("reading "+path, err)
	}
	if int64(len(data)) > limit {
		return nil, errors.New(path + " is larger than " + strconv.FormatInt(limit, 10) + " bytes: not a token file")
	}
	return data, nil
}
