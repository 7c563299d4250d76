package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokd/tokd/client"
	"github.com/tokd/tokd/credproto"
	"github.com/tokd/tokd/internal/errtext"
)

// cmdGitCredential is git's credential helper:
//
//	git config --global --replace-all credential.https://git.example.com.helper ''
//	git config --global --add credential.https://git.example.com.helper '!tokctl git-credential'
//
// (the empty helper first, so that no generic helper stores the token).
// get answers for the profile whose git.urls cover the request, or prints
// nothing so that git asks its next helper (also when git names a user
// other than the profile's git.username); erase makes the daemon drop
// the token the server refused; store and unknown actions do nothing.
func cmdGitCredential(c *client.Client, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return badUsage("git-credential takes one action: get, store or erase")
	}
	action := args[0]
	if action != "get" && action != "erase" {
		_, err := io.Copy(io.Discard, io.LimitReader(stdin, 1<<20))
		return err
	}
	req, err := credproto.ParseGitRequest(stdin)
	if err != nil {
		return errtext.Wrap("git-credential", err)
	}
	if !strings.EqualFold(req.Protocol, "https") && !strings.EqualFold(req.Protocol, "http") && req.Protocol != "" {
		// A certificate's password (cert), git send-email's login (smtp):
		// git.urls are http and https only, so no profile covers them.
		return nil
	}
	if req.Protocol == "" || req.Host == "" {
		return errors.New("git-credential: the request names no protocol and host")
	}
	if action == "erase" {
		return gitErase(c, req)
	}
	cred, err := c.Git(req.URL())
	var apiErr *client.APIError
	switch {
	case errors.Is(err, client.ErrNotFound):
		return nil // not ours: git asks the next helper
	case errors.As(err, &apiErr) && apiErr.StatusCode == 409:
		// Several profiles cover the host and git sent no path.
		io.WriteString(stderr, "tokctl: "+apiErr.Message+"\nhint: git config --global credential.useHttpPath true\n")
		return nil
	case err != nil:
		return err
	case req.Username != "" && req.Username != cred.Username:
		// git has a user already (https://alice@host/, credential.username)
		// and the profile's token is another's: not ours to answer, as
		// git's own helpers match the username too.
		return nil
	}
	return credproto.WriteGitAnswer(stdout, req, credproto.GitAnswer{
		Username: cred.Username, Token: cred.AccessToken, Expiry: cred.ExpiresAt,
	})
}

// gitErase makes the daemon forget the token git says the server refused.
// git runs erase on every helper it has, so a refused secret that is not
// the token tokd holds now (another helper's password, or a token tokd
// has already replaced) leaves tokd's token alone: the daemon compares
// the two, in the same step as it forgets. An older tokd, without that
// request, is asked for its token and told to forget it only if it is
// the refused one, as tokctl did before.
func gitErase(c *client.Client, req *credproto.GitRequest) error {
	refused := req.Refused()
	if refused != "" {
		err := c.GitRefused(req.URL(), refused)
		if !errors.Is(err, client.ErrNoRoute) {
			if errors.Is(err, client.ErrNotFound) {
				return nil
			}
			return err
		}
		cred, err := c.Git(req.URL())
		if errors.Is(err, client.ErrNotFound) {
			return nil
		}
		if err != nil || cred.AccessToken != refused {
			return err
		}
	}
	err := c.GitErase(req.URL())
	if errors.Is(err, client.ErrNotFound) {
		return nil
	}
	return err
}

// kubeExpiryMargin is how long before the token's expiry kubectl is told
// it expires, so that client-go asks again in time.
const kubeExpiryMargin = 30 * time.Second

// cmdKubectlCredential is kubectl's exec credential plugin.
func cmdKubectlCredential(c *client.Client, args []string, stdout io.Writer) error {
	pos, err := parse(newFlagSet("kubectl-credential"), args, "PROFILE")
	if err != nil {
		return err
	}
	apiVersion, err := credproto.KubeAPIVersion(os.Getenv("KUBERNETES_EXEC_INFO"))
	if err != nil {
		return err
	}
	tok, err := c.Token(pos[0])
	if err != nil {
		return err
	}
	out, err := credproto.KubeExecCredential(apiVersion, tok.AccessToken, tok.ExpiresAt.Add(-kubeExpiryMargin))
	if err != nil {
		return err
	}
	_, err = stdout.Write(append(out, '\n'))
	return err
}

// cmdDockerCredential is docker's credential helper; tokctl also runs it
// when invoked as docker-credential-tokd.
func cmdDockerCredential(c *client.Client, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return badUsage("docker-credential takes one action: get, list, store, erase or version")
	}
	switch args[0] {
	case "get":
		server, err := credproto.ReadDockerServer(stdin)
		if err != nil {
			return err
		}
		cred, err := c.Docker(server)
		if errors.Is(err, client.ErrNotFound) {
			// docker-credential-helpers' client matches this text.
			io.WriteString(stdout, credproto.DockerNotFound+"\n")
			return errSilent
		}
		if err != nil {
			return err
		}
		dc := credproto.DockerCredential{ServerURL: server, Username: cred.Username, Secret: cred.AccessToken}
		_, err = stdout.Write(append(dc.AppendJSON(nil), '\n'))
		return err
	case "list":
		list, err := c.DockerList()
		if err != nil {
			return err
		}
		if user, ok := list[credproto.DockerHub]; ok {
			// docker keys Hub's credentials by its server URL.
			delete(list, credproto.DockerHub)
			list[credproto.DockerHubServer] = user
		}
		_, err = stdout.Write(append(appendDockerListJSON(nil, list), '\n'))
		return err
	case "store", "erase":
		// tokd owns these credentials: docker login and logout change
		// nothing, so that one user's logout cannot take others' tokens.
		_, err := io.Copy(io.Discard, io.LimitReader(stdin, 1<<20))
		return err
	case "version":
		_, err := io.WriteString(stdout, "docker-credential-tokd (tokctl)\n")
		return err
	}
	return badUsage("docker-credential: unknown action " + strconv.Quote(args[0]))
}

// defaultTokenEnv is the variable tokctl exec sets when --env is not given.
const defaultTokenEnv = "TOKD_ACCESS_TOKEN"

// cmdExec runs a command with the profile's token in its environment,
// replacing tokctl so that the command's exit status is tokctl's.
func cmdExec(c *client.Client, args []string) error {
	fs := newFlagSet("exec")
	envName := fs.String("env", defaultTokenEnv) // environment variable for the token
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, errHelp) {
			return err
		}
		return badUsage("exec: " + err.Error())
	}
	rest := fs.Args()
	if len(rest) > 1 && rest[1] == "--" {
		rest = append(rest[:1], rest[2:]...)
	}
	if len(rest) < 2 {
		return badUsage("exec takes PROFILE -- COMMAND [ARGS...]")
	}
	profile, command := rest[0], rest[1:]
	if *envName == "" || strings.ContainsAny(*envName, "=\x00") {
		return badUsage("exec: --env needs a variable name without '=' or NUL")
	}
	path, err := lookPath(command[0])
	if err != nil {
		return err
	}
	tok, err := c.Token(profile)
	if err != nil {
		return err
	}
	return syscall.Exec(path, command, execEnv(os.Environ(), *envName, tok.AccessToken))
}

// execEnv returns environ with name set to value: any entry environ has
// for name is dropped, since C's getenv and Go's os.Getenv read the first
// of two, which would be a stale token from the caller's environment.
func execEnv(environ []string, name, value string) []string {
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if k, _, ok := strings.Cut(kv, "="); ok && k == name {
			continue
		}
		env = append(env, kv)
	}
	return append(env, name+"="+value)
}

// lookPath finds an executable as os/exec's LookPath does on Unix (os/exec
// is left out of tokctl for what its initialisation costs): a name with a
// slash as it is, anything else in $PATH, where an empty entry means the
// current directory, and a match relative to it is refused.
func lookPath(file string) (string, error) {
	execError := func(err error) error {
		return &errtext.Error{Msg: "exec: " + strconv.Quote(file) + ": " + err.Error(), Err: err}
	}
	switch file {
	case "", ".", "..":
		return "", execError(errNotFound)
	}
	if strings.Contains(file, "/") {
		if err := findExecutable(file); err != nil {
			return "", execError(err)
		}
		return file, nil
	}
	var dirs []string
	if env := os.Getenv("PATH"); env != "" {
		dirs = strings.Split(env, ":")
	}
	for _, dir := range dirs {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, file)
		if findExecutable(p) == nil {
			if !path.IsAbs(p) {
				return p, execError(errDot)
			}
			return p, nil
		}
	}
	return "", execError(errNotFound)
}

var (
	errNotFound = errors.New("executable file not found in $PATH")
	errDot      = errors.New("cannot run executable found relative to current directory")
)

// findExecutable reports why file is not an executable file for this
// process, as os/exec's does.
func findExecutable(file string) error {
	d, err := os.Stat(file)
	if err != nil {
		return err
	}
	m := d.Mode()
	if m.IsDir() {
		return syscall.EISDIR
	}
	const (
		atFDCWD   = -0x64 // AT_FDCWD: relative to the current directory
		atEAccess = 0x200 // AT_EACCESS: with the effective user and group
		xOK       = 1     // X_OK
	)
	err = syscall.Faccessat(atFDCWD, file, xOK, atEAccess)
	if err == nil || (err != syscall.ENOSYS && err != syscall.EPERM) {
		return err
	}
	if m&0o111 != 0 {
		return nil
	}
	return fs.ErrPermission
}
