package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tokd/tokd/config"
	"github.com/tokd/tokd/daemon"
	"github.com/tokd/tokd/emulator"
)

// runDev runs tokd against an identity-domain emulator in the same
// process: fresh keys, a demo profile, a temporary state directory and
// socket (unless --state-dir or --socket say otherwise). Everything it
// made is removed when ctx ends.
func runDev(ctx context.Context, f *flags, stdout io.Writer, log *slog.Logger) error {
	dir, err := os.MkdirTemp("", "tokd-dev-")
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer os.RemoveAll(dir)

	em, app, err := emulator.NewDev(emulator.Options{Logger: log.With("component", "emulator")})
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("dev: emulator listener: %w", err)
	}
	domain := "http://" + ln.Addr().String()
	if err := em.SetDomainURL(domain); err != nil {
		ln.Close()
		return fmt.Errorf("dev: %w", err)
	}
	emSrv := &http.Server{Handler: em, ReadHeaderTimeout: 5 * time.Second}
	go emSrv.Serve(ln)
	defer emSrv.Close()

	socket := f.socket
	if socket == "" {
		socket = filepath.Join(dir, "tokd.sock")
	}
	stateDir := f.stateDir
	if stateDir == "" {
		stateDir = filepath.Join(dir, "state")
	}
	path, err := writeDevConfig(dir, domain, socket, stateDir, app)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	cfg, _, err := config.Load(path, config.Options{})
	if err != nil {
		return fmt.Errorf("dev: the generated configuration is invalid: %w", err)
	}
	opts := daemon.Options{
		Config: cfg,
		Reload: func() (*config.Config, error) {
			cfg, _, err := config.Load(path, config.Options{})
			return cfg, err
		},
		Logger: log,
	}
	(&systemdNotifier{log: log}).hooks(&opts)
	notifyReady := opts.Ready
	opts.Ready = func(socket string) {
		notifyReady(socket)
		fmt.Fprintf(stdout, `tokd --dev is serving.
  identity-domain emulator: %s
  configuration:            %s
  socket:                   %s

Try, in another shell:
  export TOKD_SOCKET=%s
  go run ./cmd/tokctl get demo
  go run ./cmd/tokctl get --json demo
  go run ./cmd/tokctl status
  printf 'protocol=https\nhost=git.example.com\n\n' | go run ./cmd/tokctl git-credential get
  go run ./cmd/tokctl kubectl-credential demo

Ctrl-C stops tokd and removes %s.
`, domain, path, socket, socket, dir)
	}
	return daemon.Run(ctx, opts)
}

// writeDevConfig writes the demo profile's key, secret and configuration
// into dir and returns the configuration's path.
func writeDevConfig(dir, domain, socket, stateDir string, app *emulator.DevApp) (string, error) {
	files := map[string][]byte{
		"demo-user.pem": app.KeyPEM,
		"demo.secret":   []byte(app.ClientSecret + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", err
		}
	}
	cfg := fmt.Sprintf(`# Written by tokd --dev; removed when it stops.
socket = %s
state_dir = %s

[profiles.demo]
domain_url = %s
client_id = %s
client_secret_file = "demo.secret"
scopes = ["urn:opc:idm:__myscopes__"]
refresh_token = true

[profiles.demo.assertion]
subject = %s
key_file = "demo-user.pem"
key_id = %s
lifetime = "5m"

[profiles.demo.git]
urls = ["https://git.example.com/"]

[profiles.demo.docker]
registries = ["registry.example.com"]
`, strconv.Quote(socket), strconv.Quote(stateDir), strconv.Quote(domain),
		strconv.Quote(app.ClientID), strconv.Quote(app.User), strconv.Quote(app.CertAlias))
	path := filepath.Join(dir, "tokd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", err
	}
	return path, nil
}
