// Package tools_test checks the Kubernetes manifests in
// packaging/kubernetes: every document decodes strictly into its
// Kubernetes type, and the DaemonSet keeps the invariants tokd relies on
// (the socket shared through a host path at tokctl's default, credentials
// from a read-only Secret named by CREDENTIALS_DIRECTORY, no privileges).
// The ConfigMap's tokd.toml is loaded by tokd's own configuration loader.
//
// It lives in the packaging/tools module so that k8s.io/api stays out of
// tokd's go.mod. Run it with: cd packaging/tools && go test ./...
package tools_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/tokd/tokd/apitype"
	"github.com/tokd/tokd/config"
)

const manifestDir = "../kubernetes"

// kustomization is the part of kustomize's Kustomization these manifests use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []image  `json:"images"`
}

// image is a kustomize image replacement.
type image struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
	Digest  string `json:"digest"`
}

// manifests are the decoded objects, one of each kind.
type manifests struct {
	namespace      *corev1.Namespace
	serviceAccount *corev1.ServiceAccount
	configMap      *corev1.ConfigMap
	secret         *corev1.Secret
	daemonSet      *appsv1.DaemonSet
	kustomization  *kustomization
	files          []string // the YAML files, sorted
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// load decodes every document of every YAML file strictly, as the API
// server's strict field validation does: an unknown field, a field whose
// case differs (readOnlyRootFileSystem) and a duplicate field are errors.
func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", manifestDir, err)
	}
	m := &manifests{}
	for _, file := range files {
		m.files = append(m.files, filepath.Base(file))
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSeparator.Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s (document %d)", filepath.Base(file), i+1)
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj any
			wantVersion := "v1"
			switch head.Kind {
			case "Namespace":
				m.namespace = set(t, where, m.namespace)
				obj = m.namespace
			case "ServiceAccount":
				m.serviceAccount = set(t, where, m.serviceAccount)
				obj = m.serviceAccount
			case "ConfigMap":
				m.configMap = set(t, where, m.configMap)
				obj = m.configMap
			case "Secret":
				m.secret = set(t, where, m.secret)
				obj = m.secret
			case "DaemonSet":
				m.daemonSet = set(t, where, m.daemonSet)
				obj, wantVersion = m.daemonSet, "apps/v1"
			case "Kustomization":
				m.kustomization = set(t, where, m.kustomization)
				obj, wantVersion = m.kustomization, "kustomize.config.k8s.io/v1beta1"
			default:
				t.Fatalf("%s: unexpected kind %q", where, head.Kind)
			}
			if head.APIVersion != wantVersion {
				t.Errorf("%s: %s has apiVersion %q, want %q", where, head.Kind, head.APIVersion, wantVersion)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		}
	}
	for name, missing := range map[string]bool{
		"Namespace": m.namespace == nil, "ServiceAccount": m.serviceAccount == nil,
		"ConfigMap": m.configMap == nil, "Secret": m.secret == nil,
		"DaemonSet": m.daemonSet == nil, "Kustomization": m.kustomization == nil,
	} {
		if missing {
			t.Fatalf("no %s in %s", name, manifestDir)
		}
	}
	return m
}

// decodeStrict decodes a YAML document into obj the way Kubernetes does:
// case-sensitive field names, no unknown or duplicate fields.
func decodeStrict(doc string, obj any) error {
	data, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(data, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		return fmt.Errorf("%v", strictErrs)
	}
	return nil
}

// set returns a new object to decode into, failing if one was decoded
// already: each kind appears once.
func set[T any](t *testing.T, where string, prev *T) *T {
	t.Helper()
	if prev != nil {
		t.Fatalf("%s: a second %T", where, prev)
	}
	return new(T)
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestDaemonSet(t *testing.T) {
	m := load(t)
	for _, p := range checkDaemonSet(m) {
		t.Error(p)
	}
}

// TestDaemonSetChecksCanFail breaks the DaemonSet in the ways the checks
// guard against and expects each to be reported.
func TestDaemonSetChecksCanFail(t *testing.T) {
	m := load(t)
	tests := []struct {
		name   string
		break_ func(ds *appsv1.DaemonSet)
		want   string
	}{
		{"writable secret", func(ds *appsv1.DaemonSet) {
			mount(ds, "/run/credentials/tokd").ReadOnly = false
		}, "read-only"},
		{"no CREDENTIALS_DIRECTORY", func(ds *appsv1.DaemonSet) {
			c := tokdContainer(ds)
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "CREDENTIALS_DIRECTORY" })
		}, "CREDENTIALS_DIRECTORY"},
		{"socket not on the host", func(ds *appsv1.DaemonSet) {
			volume(ds, "socket-dir").VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		}, "hostPath"},
		{"socket elsewhere on the host", func(ds *appsv1.DaemonSet) {
			volume(ds, "socket-dir").HostPath.Path = "/var/run/tokd-other"
		}, "hostPath"},
		{"writable root file system", func(ds *appsv1.DaemonSet) {
			tokdContainer(ds).SecurityContext.ReadOnlyRootFilesystem = ptr(false)
		}, "readOnlyRootFilesystem"},
		{"extra capability", func(ds *appsv1.DaemonSet) {
			tokdContainer(ds).SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, "capabilities"},
		{"capabilities kept", func(ds *appsv1.DaemonSet) {
			tokdContainer(ds).SecurityContext.Capabilities.Drop = nil
		}, "drop ALL"},
		{"init container with more than CHOWN", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.InitContainers[0].SecurityContext.Capabilities.Add = []corev1.Capability{"CHOWN", "DAC_OVERRIDE"}
		}, "CHOWN"},
		{"root", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.SecurityContext.RunAsUser = ptr(int64(0))
		}, "runAsUser"},
		{"chown to another user", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.SecurityContext.RunAsUser = ptr(int64(1000))
		}, "chown"},
		{"no seccomp", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.SecurityContext.SeccompProfile = nil
		}, "seccomp"},
		{"host PIDs", func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.HostPID = true
		}, "host"},
		{"surge", func(ds *appsv1.DaemonSet) {
			surge := intstr.FromInt32(1)
			ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge = &surge
		}, "maxSurge"},
		{"no liveness probe", func(ds *appsv1.DaemonSet) {
			tokdContainer(ds).LivenessProbe = nil
		}, "livenessProbe"},
		{"probe on another socket", func(ds *appsv1.DaemonSet) {
			tokdContainer(ds).LivenessProbe.Exec.Command[1] = "--socket=/tmp/tokd.sock"
		}, "livenessProbe"},
		{"no memory limit", func(ds *appsv1.DaemonSet) {
			delete(tokdContainer(ds).Resources.Limits, corev1.ResourceMemory)
		}, "memory"},
		{"memory request below the RSS", func(ds *appsv1.DaemonSet) {
			tokdContainer(ds).Resources.Requests[corev1.ResourceMemory] = resource.MustParse("32Mi")
		}, "memory request"},
		{"GOMEMLIMIT over the limit", func(ds *appsv1.DaemonSet) {
			c := tokdContainer(ds)
			for i := range c.Env {
				if c.Env[i].Name == "GOMEMLIMIT" {
					c.Env[i].Value = "200MiB"
				}
			}
		}, "GOMEMLIMIT"},
		{"config not from the ConfigMap", func(ds *appsv1.DaemonSet) {
			volume(ds, "config").ConfigMap.Name = "other"
		}, "ConfigMap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := *m
			broken.daemonSet = m.daemonSet.DeepCopy()
			tt.break_(broken.daemonSet)
			problems := checkDaemonSet(&broken)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("no problem mentioning %q reported; got %q", tt.want, problems)
			}
		})
	}
}

// checkDaemonSet returns what is wrong with m.daemonSet.
func checkDaemonSet(m *manifests) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ds := m.daemonSet
	pod := &ds.Spec.Template.Spec

	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			fail("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	if pod.ServiceAccountName != m.serviceAccount.Name {
		fail("serviceAccountName %q, want %q", pod.ServiceAccountName, m.serviceAccount.Name)
	}
	if !isFalse(pod.AutomountServiceAccountToken) {
		fail("automountServiceAccountToken must be false: tokd does not use the Kubernetes API")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		fail("the pod must not use the host network, PID or IPC namespace")
	}
	// A surge pod would start beside the old one on the same node: it
	// could take neither the store's lock nor the socket, and the rollout
	// would stall.
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxSurge != nil && ru.MaxSurge.String() != "0" && ru.MaxSurge.String() != "0%" {
		fail("updateStrategy.rollingUpdate.maxSurge is %s: a second tokd on a node cannot take the store's lock or the socket; leave it 0", ru.MaxSurge.String())
	}

	// Who tokd runs as.
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if !isTrue(psc.RunAsNonRoot) {
		fail("pod securityContext.runAsNonRoot must be true")
	}
	uid := int64(0)
	if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		fail("pod securityContext.runAsUser must name a non-root user of tokd's own")
	} else {
		uid = *psc.RunAsUser
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		fail("pod securityContext.seccompProfile must be RuntimeDefault")
	}

	c := tokdContainer(ds)
	if c == nil {
		return append(problems, "no container named tokd")
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	if !isTrue(csc.ReadOnlyRootFilesystem) {
		fail("tokd: readOnlyRootFilesystem must be true")
	}
	if !isFalse(csc.AllowPrivilegeEscalation) {
		fail("tokd: allowPrivilegeEscalation must be false")
	}
	if isTrue(csc.Privileged) {
		fail("tokd: must not be privileged")
	}
	if isFalse(csc.RunAsNonRoot) || (csc.RunAsUser != nil && *csc.RunAsUser == 0) {
		fail("tokd: the container overrides runAsNonRoot/runAsUser with root")
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		fail("tokd: capabilities must drop ALL")
	}
	if csc.Capabilities != nil && len(csc.Capabilities.Add) > 0 {
		fail("tokd: capabilities must add none, not %v", csc.Capabilities.Add)
	}

	// The init container may only hand the host directories to tokd's user.
	for _, ic := range pod.InitContainers {
		sc := ic.SecurityContext
		if sc == nil || !isTrue(sc.ReadOnlyRootFilesystem) || !isFalse(sc.AllowPrivilegeEscalation) ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			fail("init container %s: needs readOnlyRootFilesystem, no privilege escalation and drop ALL", ic.Name)
			continue
		}
		for _, capability := range sc.Capabilities.Add {
			if capability != "CHOWN" {
				fail("init container %s: may add CHOWN only, not %s", ic.Name, capability)
			}
		}
		if len(ic.Command) < 2 || ic.Command[0] != "chown" || ic.Command[1] != fmt.Sprintf("%d:%d", uid, uid) {
			fail("init container %s: must chown to tokd's user %d:%d, runs %q", ic.Name, uid, uid, ic.Command)
		}
	}

	// Flags and the volumes behind them.
	flags := map[string]string{}
	for _, arg := range c.Args {
		name, value, ok := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "--") || !ok {
			fail("tokd: argument %q is not --name=value", arg)
			continue
		}
		flags[name] = value
	}

	// The socket: at tokctl's default for root, in a directory that is the
	// same directory on the host, writable for tokd.
	socket := apitype.DefaultSocket(0, "")
	if flags["socket"] != socket {
		fail("tokd: --socket=%q, want tokctl's default %q", flags["socket"], socket)
	}
	socketDir := path.Dir(socket)
	if vm, v := mountAt(ds, c, socketDir); v == nil || v.HostPath == nil || v.HostPath.Path != socketDir {
		fail("the socket directory %s must be a hostPath volume of the same path", socketDir)
	} else if vm.ReadOnly {
		fail("the socket directory must be writable for tokd")
	}

	// State on the host (see the comment on the volume).
	if vm, v := mountAt(ds, c, flags["state-dir"]); v == nil || v.HostPath == nil || v.HostPath.Path != "/var/lib/tokd" {
		fail("--state-dir=%q must be the hostPath /var/lib/tokd", flags["state-dir"])
	} else if vm.ReadOnly {
		fail("the state directory must be writable for tokd")
	}

	// Configuration from the ConfigMap, read-only.
	cfgDir, cfgFile := path.Split(flags["config"])
	if vm, v := mountAt(ds, c, path.Clean(cfgDir)); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != m.configMap.Name {
		fail("--config=%q must be in a volume of ConfigMap %s", flags["config"], m.configMap.Name)
	} else if !vm.ReadOnly {
		fail("the ConfigMap must be mounted read-only")
	}
	if _, ok := m.configMap.Data[cfgFile]; !ok {
		fail("ConfigMap %s has no key %s", m.configMap.Name, cfgFile)
	}

	// Credentials from the Secret, read-only, named by CREDENTIALS_DIRECTORY.
	credDir := credentialsDirectory(c)
	if credDir == "" {
		fail("tokd: no CREDENTIALS_DIRECTORY in env")
	} else if vm, v := mountAt(ds, c, credDir); v == nil || v.Secret == nil || v.Secret.SecretName != m.secret.Name {
		fail("CREDENTIALS_DIRECTORY=%s must be a volume of Secret %s", credDir, m.secret.Name)
	} else if !vm.ReadOnly {
		fail("the Secret must be mounted read-only")
	}

	// Small, bounded resources: tokd's RSS target is under 64 MiB.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		if !hasReq || !hasLim {
			fail("tokd: %s needs a request and a limit", r)
		} else if req.Cmp(lim) > 0 {
			fail("tokd: %s request %s exceeds its limit %s", r, req.String(), lim.String())
		}
	}
	if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; ok &&
		(lim.Cmp(resource.MustParse("64Mi")) < 0 || lim.Cmp(resource.MustParse("256Mi")) > 0) {
		fail("tokd: memory limit %s should be between 64Mi and 256Mi", lim.String())
	}
	// The request covers the RSS measured at 1,000 profiles (peak 48-57
	// MiB, docs/BENCHMARKS.md): a pod using more than it requests is the
	// first the kubelet evicts under memory pressure, and every pod on the
	// node then loses its tokens.
	if req, ok := c.Resources.Requests[corev1.ResourceMemory]; ok && req.Cmp(resource.MustParse("64Mi")) < 0 {
		fail("tokd: memory request %s is below the 64Mi tokd's RSS reaches at 1,000 profiles", req.String())
	}
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		soft, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
		if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; err != nil || !ok || soft.Cmp(lim) >= 0 {
			fail("tokd: GOMEMLIMIT=%s must be a size below the memory limit", e.Value)
		}
	}

	// Probes: tokctl status on the same socket.
	probes := map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe}
	for name, p := range probes {
		if p == nil || p.Exec == nil {
			fail("tokd: no exec %s", name)
			continue
		}
		want := []string{"/usr/bin/tokctl", "--socket=" + socket, "status"}
		if !slices.Equal(p.Exec.Command, want) {
			fail("tokd: %s runs %q, want %q", name, p.Exec.Command, want)
		}
	}
	return problems
}

// TestConfigMapConfig loads the ConfigMap's tokd.toml with tokd's own
// loader, as the pod would, with every file it names provided under the
// Secret's keys in CREDENTIALS_DIRECTORY. A file the Secret lacks, an
// unknown key or an invalid value fails.
func TestConfigMapConfig(t *testing.T) {
	m := load(t)
	c := tokdContainer(m.daemonSet)
	credDir := credentialsDirectory(c)
	if credDir == "" {
		t.Fatal("no CREDENTIALS_DIRECTORY")
	}
	data, ok := m.configMap.Data["tokd.toml"]
	if !ok {
		t.Fatal("the ConfigMap has no tokd.toml")
	}
	fsys := fstest.MapFS{}
	for _, name := range secretKeys(m.secret) {
		fsys[strings.TrimPrefix(path.Join(credDir, name), "/")] = &fstest.MapFile{Data: fakeCredential(t, name), Mode: 0o400}
	}
	cfg, warnings, err := config.Parse([]byte(data), config.Options{CredentialsDirectory: credDir, FS: fsys})
	if err != nil {
		t.Fatalf("tokd.toml of ConfigMap %s: %v", m.configMap.Name, err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w)
	}
	if len(cfg.Profiles) == 0 {
		t.Error("no profiles")
	}
	if cfg.Socket != "" || cfg.StateDir != "" {
		t.Errorf("socket %q and state_dir %q belong to the DaemonSet's flags", cfg.Socket, cfg.StateDir)
	}
}

// TestSecretIsAPlaceholder keeps real credentials out of the repository
// and checks that the Secret carries the sealing key.
func TestSecretIsAPlaceholder(t *testing.T) {
	m := load(t)
	if len(m.secret.Data) > 0 {
		t.Errorf("Secret %s has data:; use stringData placeholders", m.secret.Name)
	}
	for key, value := range m.secret.StringData {
		if !strings.Contains(value, "REPLACE") {
			t.Errorf("Secret %s: %s is not a REPLACE placeholder; real credentials do not belong here", m.secret.Name, key)
		}
	}
	if _, ok := m.secret.StringData["tokd.key"]; !ok {
		t.Errorf("Secret %s has no tokd.key: the cache on the host must be sealed with a key kept elsewhere", m.secret.Name)
	}
}

// TestKustomization checks that kustomize applies every manifest but the
// Secret placeholder, in one namespace, with every image given.
func TestKustomization(t *testing.T) {
	m := load(t)
	k := m.kustomization
	var want []string
	for _, f := range m.files {
		if f != "kustomization.yaml" && f != "secret.yaml" {
			want = append(want, f)
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %q, want %q", got, want)
	}
	if k.Namespace != m.namespace.Name {
		t.Errorf("kustomization namespace %q, want %q", k.Namespace, m.namespace.Name)
	}
	for _, obj := range []struct {
		kind, namespace string
	}{
		{"ServiceAccount", m.serviceAccount.Namespace},
		{"ConfigMap", m.configMap.Namespace},
		{"Secret", m.secret.Namespace},
		{"DaemonSet", m.daemonSet.Namespace},
	} {
		if obj.namespace != m.namespace.Name {
			t.Errorf("%s is in namespace %q, want %q", obj.kind, obj.namespace, m.namespace.Name)
		}
	}
	pod := m.daemonSet.Spec.Template.Spec
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		if !slices.ContainsFunc(k.Images, func(i image) bool {
			return i.Name == c.Image && i.NewName != "" && (i.NewTag != "" || i.Digest != "")
		}) {
			t.Errorf("container %s: image %q has no newName and tag in the kustomization", c.Name, c.Image)
		}
	}
}

func tokdContainer(ds *appsv1.DaemonSet) *corev1.Container {
	for i := range ds.Spec.Template.Spec.Containers {
		if c := &ds.Spec.Template.Spec.Containers[i]; c.Name == "tokd" {
			return c
		}
	}
	return nil
}

func credentialsDirectory(c *corev1.Container) string {
	for _, e := range c.Env {
		if e.Name == "CREDENTIALS_DIRECTORY" {
			return e.Value
		}
	}
	return ""
}

// mountAt returns the container's mount at dir and the volume behind it.
func mountAt(ds *appsv1.DaemonSet, c *corev1.Container, dir string) (*corev1.VolumeMount, *corev1.Volume) {
	for i := range c.VolumeMounts {
		if vm := &c.VolumeMounts[i]; path.Clean(vm.MountPath) == dir && vm.SubPath == "" {
			return vm, volume(ds, vm.Name)
		}
	}
	return nil, nil
}

func mount(ds *appsv1.DaemonSet, dir string) *corev1.VolumeMount {
	vm, _ := mountAt(ds, tokdContainer(ds), dir)
	return vm
}

func volume(ds *appsv1.DaemonSet, name string) *corev1.Volume {
	for i := range ds.Spec.Template.Spec.Volumes {
		if v := &ds.Spec.Template.Spec.Volumes[i]; v.Name == name {
			return v
		}
	}
	return nil
}

func secretKeys(s *corev1.Secret) []string {
	var keys []string
	for k := range s.StringData {
		keys = append(keys, k)
	}
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var fakeKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// fakeCredential makes up valid contents for a Secret key, by its name:
// an RSA key for *.pem, a sealing key for tokd.key, a secret otherwise.
func fakeCredential(t *testing.T, name string) []byte {
	t.Helper()
	switch {
	case name == "tokd.key":
		b := make([]byte, 32)
		rand.Read(b)
		return []byte(hex.EncodeToString(b) + "\n")
	case strings.HasSuffix(name, ".pem"):
		key, err := fakeKey()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	return []byte("not-a-real-secret-" + strconv.Itoa(len(name)) + "\n")
}

func ptr[T any](v T) *T { return &v }

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }
