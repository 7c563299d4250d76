// Command tokctl is tokd's thin client: it prints tokens for shells and
// scripts, and asks the daemon to refresh, forget or import them.
//
// Exit codes: 0 ok, 1 failure (message on stderr), 2 usage, 3 daemon
// unreachable.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/client"
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
	if filepath.Base(os.Args[0]) == "docker-credential-tokd" {
		// docker runs its helpers by this name: docker-credential-tokd get.
		args = append([]string{"docker-credential"}, args...)
	}
	os.Exit(exitCode(run(args, os.Stdin, os.Stdout, os.Stderr), os.Stderr))
}

// usageError is a command line tokctl does not understand.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

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
		fmt.Fprintf(stderr, "tokctl: %s\n%s", ue.msg, usage)
		return exitUsage
	case errors.Is(err, errSilent):
		return exitFailure
	case errors.Is(err, client.ErrUnreachable):
		fmt.Fprintf(stderr, "tokctl: %v\nhint: start it with `systemctl start tokd` (or `systemctl --user start tokd`),\nhint: or run `tokd --config FILE`; set --socket or TOKD_SOCKET if it listens elsewhere\n", err)
		return exitUnreachable
	case errors.Is(err, client.ErrForbidden):
		fmt.Fprintf(stderr, "tokctl: %v\nhint: the profile's allowed_uids/allowed_gids decide who may read its token\n", err)
		return exitFailure
	}
	fmt.Fprintf(stderr, "tokctl: %v\n", err)
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

credential helpers (called by the tools, not by hand):
  git-credential get|store|erase    git: credential.helper = '!tokctl git-credential'
  kubectl-credential PROFILE        kubectl: users[].user.exec
  docker-credential get|list|store|erase|version
                                    docker: credHelpers, or run as docker-credential-tokd

The socket is --socket, else $TOKD_SOCKET, else /run/tokd/tokd.sock for
root and $XDG_RUNTIME_DIR/tokd/tokd.sock for everyone else.
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	global := flag.NewFlagSet("tokctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	socket := global.String("socket", "", "path of tokd's socket")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return usagef("%v", err)
	}
	args = global.Args()
	if len(args) == 0 {
		return usagef("no command")
	}
	c := &client.Client{Socket: socketPath(*socket)}
	cmd, args := args[0], args[1:]
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
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usagef("unknown command %q", cmd)
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
func parse(fs *flag.FlagSet, args []string, names ...string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%s: %v", fs.Name(), err)
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
			return nil, usagef("%s takes no arguments", fs.Name())
		}
		return nil, usagef("%s takes %s", fs.Name(), strings.Join(names, " "))
	}
	return pos, nil
}

func cmdGet(c *client.Client, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print profile, access_token, token_type, expires_at as JSON")
	header := fs.Bool("header", false, "print an Authorization header line")
	pos, err := parse(fs, args, "PROFILE")
	if err != nil {
		return err
	}
	if *asJSON && *header {
		return usagef("get: --json and --header exclude each other")
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
		err = writeJSON(w, tok)
	case header:
		_, err = fmt.Fprintf(w, "Authorization: %s %s\n", tok.TokenType, tok.AccessToken)
	default:
		_, err = fmt.Fprintln(w, tok.AccessToken)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdStatus(c *client.Client, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, st)
	}
	if len(st.Profiles) == 0 {
		_, err := fmt.Fprintln(stdout, "no profiles you may see")
		return err
	}
	fmt.Fprintf(stdout, "%-20s %-10s %-20s %-20s %-20s %s\n", "PROFILE", "STATE", "EXPIRES", "LAST REFRESH", "NEXT REFRESH", "LAST ERROR")
	for _, p := range st.Profiles {
		lastErr := p.LastError
		if lastErr != "" && p.LastErrorAt != nil {
			lastErr = stamp(p.LastErrorAt) + " " + lastErr
		}
		if p.StoreError != "" {
			lastErr = strings.TrimSpace(lastErr + " (not saved: " + p.StoreError + ")")
		}
		fmt.Fprintf(stdout, "%-20s %-10s %-20s %-20s %-20s %s\n", p.Profile, p.State,
			stamp(p.ExpiresAt), stamp(p.LastRefresh), stamp(p.NextRefresh), lastErr)
	}
	return nil
}

func stamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func cmdRefresh(c *client.Client, args []string, stdout io.Writer) error {
	pos, err := parse(flag.NewFlagSet("refresh", flag.ContinueOnError), args, "PROFILE")
	if err != nil {
		return err
	}
	tok, err := c.Refresh(pos[0])
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: refreshed, expires %s\n", tok.Profile, tok.ExpiresAt.UTC().Format(time.RFC3339))
	return err
}

func cmdForget(c *client.Client, args []string) error {
	pos, err := parse(flag.NewFlagSet("forget", flag.ContinueOnError), args, "PROFILE")
	if err != nil {
		return err
	}
	return c.Forget(pos[0])
}

func cmdImport(c *client.Client, args []string, stdout io.Writer) error {
	pos, err := parse(flag.NewFlagSet("import", flag.ContinueOnError), args, "PROFILE", "FILE")
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
	_, err = fmt.Fprintf(stdout, "%s: imported, expires %s\n", tok.Profile, tok.ExpiresAt.UTC().Format(time.RFC3339))
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
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a token file", path, limit)
	}
	return data, nil
}
