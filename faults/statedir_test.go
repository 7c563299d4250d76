package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokd/tokd/daemon"
	"github.com/tokd/tokd/emulator"
)

// saveFailedLine is in the cache's log line for a failed Store.Put.
const saveFailedLine = "saving the token failed"

// TestStateDirFull mounts a 64 KiB tmpfs as the state directory and fills
// it between the daemon's start and its first save. It proves that tokd
// serves the fetched token from memory, logs the failure to save it (no
// space left on device), keeps serving refreshed tokens while the
// directory stays full, and saves again once there is room: the store then
// holds the last token. It checks whether status and the metrics say so.
func TestStateDirFull(t *testing.T) {
	e := newEnv(t, envOptions{})
	mount(t, e.stateDir, "-t", "tmpfs", "-o", "size=64k", "tmpfs")
	metricsAddr := freeLoopbackAddr(t)
	e.writeConfig(fmt.Sprintf("metrics_address = %q\n", metricsAddr), e.clientCredentialsProfile("ci"))

	// The first token request waits until the directory is full.
	taken := make(chan struct{}, 1)
	release := make(chan struct{})
	e.em.Inject(emulator.Fault{Wait: release, Taken: taken})
	d := e.start(nil)
	select {
	case <-taken:
	case <-time.After(waitTimeout):
		t.Fatal("no token request reached the emulator")
	}
	filler := fill(t, e.stateDir)
	close(release)

	tok1 := d.get(t, "ci")
	if line := e.logs.waitCount(t, saveFailedLine, 1); !strings.Contains(line, "no space left on device") {
		t.Errorf("the log line of the failed save does not say why: %s", line)
	}
	checkStoreFailureReported(t, e, d, metricsAddr)

	// Refreshed tokens are served from memory while the directory is full.
	tok2 := d.refresh(t, "ci")
	if tok2.AccessToken == tok1.AccessToken {
		t.Fatalf("refresh returned the old token")
	}
	if got := d.get(t, "ci"); got.AccessToken != tok2.AccessToken {
		t.Errorf("get after a refresh that could not be saved serves another token than the refreshed one")
	}
	e.logs.waitCount(t, saveFailedLine, 2)

	// With room again the next token is saved.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	tok3 := d.refresh(t, "ci")
	if err := d.stop(); err != nil {
		t.Fatalf("stopping the daemon: %v", err)
	}
	if n := e.logs.count(saveFailedLine); n != 2 {
		t.Errorf("%d failed saves logged, want 2 (none once there was room)", n)
	}
	st := e.openStore(t, "the store after the directory had room again", io.Discard)
	rec, err := st.Get("ci")
	st.Close()
	if err != nil || rec.AccessToken != tok3.AccessToken {
		t.Errorf("the store does not hold the token refreshed once there was room: %v", err)
	}
}

// TestStateDirFullAfterSave fills the state directory once a token has
// been saved, then refreshes. bbolt reuses the pages its earlier writes
// freed, so a full file system need not stop it from saving: this test
// proves that tokd serves the refreshed token either way, and that it
// either saves it or logs that it could not.
func TestStateDirFullAfterSave(t *testing.T) {
	e := newEnv(t, envOptions{})
	mount(t, e.stateDir, "-t", "tmpfs", "-o", "size=64k", "tmpfs")
	e.writeConfig(e.clientCredentialsProfile("ci"))
	d := e.start(nil)
	tok1 := d.get(t, "ci")
	if err := d.stop(); err != nil { // the token is saved when Run returns
		t.Fatal(err)
	}
	fill(t, e.stateDir)

	e.em.ResetStats()
	d = e.start(nil)
	if got := d.get(t, "ci"); got.AccessToken != tok1.AccessToken || e.em.Stats().TokenRequests != 0 {
		t.Fatalf("the daemon on a full directory does not serve the stored token without a request")
	}
	tok2 := d.refresh(t, "ci")
	if got := d.get(t, "ci"); got.AccessToken != tok2.AccessToken {
		t.Errorf("get after a refresh on a full directory serves another token than the refreshed one")
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	st := e.openStore(t, "the store on a full directory", io.Discard)
	rec, err := st.Get("ci")
	st.Close()
	saved := err == nil && rec.AccessToken == tok2.AccessToken
	failed := e.logs.count(saveFailedLine) > 0
	t.Logf("refresh on a full directory after a first save: saved %v, save failure logged %v", saved, failed)
	if saved == failed {
		t.Errorf("the refreshed token was saved: %v; a failed save was logged: %v; want exactly one", saved, failed)
	}
}

// TestStateDirReadOnly puts the state directory on an ext4 file system
// mounted with errors=remount-ro and, once the daemon serves, makes the
// kernel turn it read-only (through /sys/fs/ext4/DEV/trigger_fs_error, as
// an I/O error would). A read-only remount is refused while tokd.db is
// open for writing (EBUSY), which is why the test takes this way. It
// proves that tokd serves refreshed tokens from memory and logs the
// failure to save them (read-only file system); it checks whether status
// and the metrics say so, and what a restart on the read-only directory
// does.
func TestStateDirReadOnly(t *testing.T) {
	e := newEnv(t, envOptions{})
	dev := mountExt4(t, e.stateDir)
	trigger := filepath.Join("/sys/fs/ext4", dev, "trigger_fs_error")
	if _, err := os.Stat(trigger); err != nil {
		t.Skipf("cannot make the file system read-only: %v", err)
	}
	metricsAddr := freeLoopbackAddr(t)
	e.writeConfig(fmt.Sprintf("metrics_address = %q\n", metricsAddr), e.clientCredentialsProfile("ci"))
	d := e.start(nil)
	tok1 := d.get(t, "ci")

	if err := os.WriteFile(trigger, []byte("tokd faults test: the state directory turns read-only"), 0); err != nil {
		t.Skipf("cannot make the file system read-only: %v", err)
	}
	if err := os.WriteFile(filepath.Join(e.stateDir, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("writing into the state directory after the error: %v, want EROFS", err)
	}

	tok2 := d.refresh(t, "ci")
	if tok2.AccessToken == tok1.AccessToken {
		t.Fatalf("refresh returned the old token")
	}
	if got := d.get(t, "ci"); got.AccessToken != tok2.AccessToken {
		t.Errorf("get after a refresh that could not be saved serves another token than the refreshed one")
	}
	if line := e.logs.waitCount(t, saveFailedLine, 1); !strings.Contains(line, "read-only file system") {
		t.Errorf("the log line of the failed save does not say why: %s", line)
	}
	checkStoreFailureReported(t, e, d, metricsAddr)
	if err := d.stop(); err != nil {
		t.Fatalf("stopping the daemon on a read-only state directory: %v", err)
	}

	// A daemon started on the read-only directory.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := e.options(nil)
	served := false
	opts.Ready = func(string) { served = true; cancel() }
	err := daemon.Run(ctx, opts)
	if !served {
		gap(t, "a daemon started on a read-only state directory refuses to run at all (daemon/daemon.go Run returns store.LoadKey's error, "+
			"from store/open.go ensureStateDir's chmod of the directory, before it even reads the key) instead of serving from memory: %v", err)
	}
}

// checkStoreFailureReported checks whether the daemon tells its users
// that the token it serves is not saved: in status (on the socket) and in
// the metrics (GET /v1/metrics on the socket, or metrics_address).
func checkStoreFailureReported(t *testing.T, e *env, d *running, metricsAddr string) {
	t.Helper()
	hc := socketHTTPClient(d.client.Socket)
	var st struct {
		Profiles []map[string]any `json:"profiles"`
	}
	if err := getJSON(hc, "http://tokd/v1/status", &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	reported := false
	for _, p := range st.Profiles {
		for k, v := range p {
			if strings.Contains(k, "store") && v != nil && v != "" && v != false {
				reported = true
			}
		}
	}
	if !reported {
		gap(t, "status does not say that the token is not saved: cache.ProfileStatus.StoreError has no field in "+
			"apitype.ProfileStatus (apitype/apitype.go), and daemon/server.go toAPIStatus drops it; status shows %v", st.Profiles)
	}

	// The metrics, on the socket and on metrics_address.
	sources := 0
	for _, src := range []struct {
		name string
		hc   *http.Client
		url  string
	}{
		{"GET /v1/metrics on the socket", hc, "http://tokd/v1/metrics"},
		{"metrics_address", http.DefaultClient, "http://" + metricsAddr + "/metrics"},
	} {
		if src.name == "metrics_address" && e.logs.count(`msg="metrics serving"`) == 0 {
			continue
		}
		v, found, ok := scrapeMetric(t, src.hc, src.url, "tokd_store_writable")
		switch {
		case !ok:
			continue
		case !found:
			t.Errorf("%s: no tokd_store_writable", src.name)
		case v != "0":
			t.Errorf("%s: tokd_store_writable = %s after a failed save, want 0", src.name, v)
		default:
			t.Logf("%s: tokd_store_writable %s", src.name, v)
		}
		sources++
	}
	if sources == 0 {
		gap(t, "no metrics: neither GET /v1/metrics on the socket nor metrics_address serves them")
	}
}

// socketHTTPClient returns a net/http client over the daemon's socket.
func socketHTTPClient(socket string) *http.Client {
	return &http.Client{
		Timeout: waitTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			DisableKeepAlives: true,
		},
	}
}

func getJSON(hc *http.Client, url string, v any) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// scrapeMetric returns the value of the sample of the metric named name
// (without labels) in the exposition at url, whether there is one, and
// whether url serves metrics at all (404: no).
func scrapeMetric(t *testing.T, hc *http.Client, url, name string) (value string, found, ok bool) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", false, false
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strings.TrimSpace(v), true, true
		}
	}
	return "", false, true
}

// freeLoopbackAddr returns a loopback address with a port nothing listens
// on at the moment.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// mount mounts a file system on dir with mount(8) and the given arguments
// (before dir), and unmounts it at the end of the test, after the daemons
// have stopped. It skips the test when mounting is not permitted.
func mount(t *testing.T, dir string, args ...string) {
	t.Helper()
	out, err := exec.Command("mount", append(args, dir)...).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a file system for the state directory (needs root and CAP_SYS_ADMIN): mount %s: %v: %s",
			strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// mountExt4 mounts a new 8 MiB ext4 file system, errors=remount-ro, on
// dir and returns the name of its loop device.
func mountExt4(t *testing.T, dir string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "state.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("cannot make an ext4 file system: %v: %s", err, out)
	}
	mount(t, dir, "-t", "ext4", "-o", "loop,errors=remount-ro", img)
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE", dir).Output()
	if err != nil {
		t.Skipf("cannot find the loop device: %v", err)
	}
	return filepath.Base(strings.TrimSpace(string(out)))
}

// fill writes a file into dir until the file system is full and returns
// its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := bytes.Repeat([]byte{0xff}, 4096)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return path
		}
	}
}
