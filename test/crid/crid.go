// Package crid runs a private containerd 2.4 (test/ctrd) with its CRI
// plugin, the boxlite handlers of deploy/containerd/boxlite.toml pointed at
// test configs naming the libkrun test double (or the emulated engine:
// Options.Libkrun), a private CNI bridge network (bridge, host-local and
// loopback from the deps cache), the busybox test image and a locally built
// pause image, and drives it with the real crictl. test/cri's and
// test/guest's suites and the bench's CRI figure use it. It must not be
// imported by product code.
package crid

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/ocitest"
)

const (
	// PauseImage is the pod sandbox image: the busybox test image whose
	// command is `sleep`, imported locally and pinned as CRI's sandbox image.
	PauseImage = "docker.io/boxlite/pause:test"
	// BridgeName is the CNI bridge of the private network.
	BridgeName = "bxcri0"
	// PodSubnet is the private network's pod address range.
	PodSubnet = "10.87.77.0/24"
	// PodGateway is the bridge's address, the pods' default gateway.
	PodGateway = "10.87.77.1"
	// Namespace is the containerd namespace of CRI.
	Namespace = "k8s.io"
)

// Options tune the environment.
type Options struct {
	// ExtraCRIConfig is appended to the daemon's config after the CRI
	// settings and the boxlite drop-in (config version 3 tables), e.g.
	// more runtime handlers.
	ExtraCRIConfig string
	// SandboxImage, when set, is pinned as CRI's sandbox image instead of
	// PauseImage (which is still imported); the caller makes it pullable.
	SandboxImage string
	// ExtraCNIPlugins are plugin configurations (JSON objects) appended
	// to the network's chain, e.g. portmap.
	ExtraCNIPlugins []string
	// Imports, when set, stand in for the repository's drop-in and the
	// env's shim configs: the daemon's config imports these files (e.g. the
	// conf.d/*.toml of an installed node), whose handlers name their own
	// shim configs, and LeanConfig and NetConfig stay empty.
	Imports []string
	// BinDir holds the shim binaries the daemon runs; "" = the
	// repository's build (ctrd.BinDir).
	BinDir string
	// Libkrun is the libkrun_path of the boxlite handlers' shim configs:
	// "" is the libkrun test double (bin/test/libkrun.so.1); the guest
	// suite names the emulated engine.
	Libkrun string
	// ShimConfig is appended to both handlers' shim configs (after their
	// top-level keys and [kernel] table: a TOML table of its own, e.g.
	// "[vm]\nready_timeout_s = 300\n").
	ShimConfig string
}

// Env is one private containerd with CRI, the boxlite drop-in, a CNI bridge
// network, the busybox and pause images, and crictl pointed at it.
type Env struct {
	D        *ctrd.Daemon
	Dir      string // configs, shim cache, CNI, logs
	StateDir string // the shim's state_dir
	CacheDir string // the shim's cache_dir
	// LeanConfig and NetConfig are the shim configs of the boxlite and
	// boxlite-net handlers.
	LeanConfig string
	NetConfig  string
	// LogDir holds pods' log directories (PodConfig).
	LogDir string
	// Double is the libkrun test double (the repository's
	// bin/test/libkrun.so.1), which the env's shim configs name.
	Double   string
	crictlCf string
}

// DropIn is deploy/containerd/boxlite.toml with each ConfigPath named in
// cfgs (as a key) replaced by its value, made fit to append to a daemon's
// config.
func DropIn(t testing.TB, cfgs map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ctrd.RepoRoot(t), "deploy", "containerd", "boxlite.toml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for from, to := range cfgs {
		if !strings.Contains(text, fmt.Sprintf("%q", from)) {
			t.Fatalf("the drop-in no longer names %s", from)
		}
		text = strings.ReplaceAll(text, fmt.Sprintf("%q", from), fmt.Sprintf("%q", to))
	}
	// The drop-in is a file of its own (version = 3); appended to the
	// daemon's config, only its tables go.
	return regexp.MustCompile(`(?m)^version = 3$`).ReplaceAllString(text, "")
}

// New starts the environment; t.Cleanup stops the daemon and removes the
// bridge and every directory. Tests call AssertClean before that.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("CRI tests need root: this test runs as uid", os.Geteuid())
	}
	bin := o.BinDir
	if bin == "" {
		bin = ctrd.BinDir(t)
	}
	deps := ctrd.Deps()
	ctrd.Require(t, filepath.Join(ctrd.BinDir(t), "test", "libkrun.so.1"), filepath.Join(bin, "boxlite-vmm"), filepath.Join(bin, "boxlite-agent"),
		filepath.Join(deps, "bin", "crictl"), filepath.Join(deps, "cni", "bin", "bridge"), filepath.Join(deps, "cni", "bin", "host-local"),
		filepath.Join(deps, "cni", "bin", "loopback"), filepath.Join(deps, "busybox", "busybox"))
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("CRI tests need the ip command (iproute2) to remove the test bridge: not found on this host")
	}
	dir, err := os.MkdirTemp("", "bxp") // short: agent sockets live under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", BridgeName).Run()
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	// The shim's state is in /run: CRI's 64-character pod ids must leave
	// <state_dir>/k8s.io/<id>/vmm/agent.sock within a Unix socket path's
	// 107 bytes (the default /run/boxlite does).
	stateDir, err := os.MkdirTemp("/run", "bxp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(stateDir); err != nil {
			t.Errorf("remove %s: %v", stateDir, err)
		}
	})
	e := &Env{Dir: dir, StateDir: stateDir, CacheDir: filepath.Join(dir, "cache"), LogDir: filepath.Join(dir, "logs")}
	e.Double, _ = filepath.Abs(filepath.Join(ctrd.BinDir(t), "test", "libkrun.so.1"))
	libkrun := o.Libkrun
	if libkrun == "" {
		libkrun = e.Double
	}
	dropIn := ""
	if len(o.Imports) == 0 {
		base := ctrd.ShimConfig(libkrun, e.StateDir, e.CacheDir)
		e.LeanConfig = e.Write(t, "config.toml", base+"[kernel]\ndefault = \"lean\"\n"+o.ShimConfig)
		// boxlite-net's config also lets pods size their VM by annotation.
		e.NetConfig = e.Write(t, "config-net.toml", base+"[kernel]\ndefault = \"net\"\n[annotations]\nenabled = [\"io.boxlite.kernel\", \"io.boxlite.memory_mib\"]\n"+o.ShimConfig)
		dropIn = DropIn(t, map[string]string{"/etc/boxlite/config.toml": e.LeanConfig, "/etc/boxlite/config-net.toml": e.NetConfig})
	}
	cniConf := filepath.Join(dir, "cni", "conf")
	e.Write(t, "cni/conf/10-bxcri.conflist", fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "bxcri",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "loopback"}%s
  ]
}
`, BridgeName, PodSubnet, filepath.Join(dir, "cni", "ipam"), extraPlugins(o.ExtraCNIPlugins)))
	// No CAP_SYS_RESOURCE in every test environment: CRI must not try to
	// lower a container's oom_score_adj below its own.
	sandboxImage := PauseImage
	if o.SandboxImage != "" {
		sandboxImage = o.SandboxImage
	}
	extra := fmt.Sprintf(`
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [%q]
  conf_dir = %q

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %q
%s
%s`, filepath.Join(deps, "cni", "bin"), cniConf, sandboxImage,
		dropIn, o.ExtraCRIConfig)
	e.D = ctrd.Start(t, ctrd.Options{CRI: true, ExtraConfig: extra, Imports: o.Imports, BinDir: o.BinDir})
	e.crictlCf = e.Write(t, "crictl.yaml", fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", e.D.Address, e.D.Address))
	e.importImages(t)
	return e
}

func extraPlugins(plugins []string) string {
	var b strings.Builder
	for _, p := range plugins {
		b.WriteString(",\n    " + p)
	}
	return b.String()
}

// Write writes body to name under the env's directory and returns its path.
func (e *Env) Write(t testing.TB, name, body string) string {
	t.Helper()
	p := filepath.Join(e.Dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// importImages imports the busybox test image, and the same image with
// `sleep` for command as the pause image, into CRI's namespace.
func (e *Env) importImages(t testing.TB) {
	t.Helper()
	busybox := filepath.Join(ctrd.Deps(), "busybox", "busybox")
	tmp, err := os.MkdirTemp(e.Dir, "images")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	bb := filepath.Join(tmp, "busybox.tar")
	if err := ocitest.BusyboxImage(busybox, bb, ocitest.ImageName); err != nil {
		t.Fatal(err)
	}
	pause := filepath.Join(tmp, "pause.tar")
	if err := ocitest.BusyboxImage(busybox, pause, PauseImage); err != nil {
		t.Fatal(err)
	}
	if err := SetCmd(pause, []string{"sleep", "2147483647"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, a := range []string{bb, pause} {
		cmd := exec.CommandContext(ctx, filepath.Join(ctrd.Deps(), "bin", "ctr"), "--address", e.D.Address, "--namespace", Namespace, "image", "import", a)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ctr image import %s: %v\n%s", a, err, out)
		}
	}
}

// Crictl runs the real crictl against the daemon; stdout comes back, stderr
// goes into the error.
func (e *Env) Crictl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return e.CrictlContext(context.Background(), args...)
}

// CrictlContext is Crictl with a context (its own 90 s limit still holds).
func (e *Env) CrictlContext(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(ctrd.Deps(), "bin", "crictl"), append([]string{"--config", e.crictlCf}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+e.D.PATH)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Must is Crictl that fails the test on error.
func (e *Env) Must(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.Crictl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// JSONFile writes v as JSON under the env's directory.
func (e *Env) JSONFile(t testing.TB, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return e.Write(t, name, string(b))
}

// PodConfig is a crictl pod sandbox config (CRI PodSandboxConfig as JSON)
// whose logs go to LogDir/name.
func (e *Env) PodConfig(name string, annotations map[string]string, linux map[string]any) map[string]any {
	c := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 1},
		"log_directory": filepath.Join(e.LogDir, name),
		"linux":         linux,
	}
	if annotations != nil {
		c["annotations"] = annotations
	}
	if linux == nil {
		c["linux"] = map[string]any{}
	}
	return c
}

// ContainerConfig is a crictl container config (CRI ContainerConfig as
// JSON) of the busybox test image, logging to name.log in its pod's log
// directory.
func ContainerConfig(name string, annotations map[string]string, command ...string) map[string]any {
	c := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": ocitest.ImageName},
		"command":  command,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	if annotations != nil {
		c["annotations"] = annotations
	}
	return c
}

// RemovePod stops and removes a pod (and so its containers).
func (e *Env) RemovePod(ctx context.Context, id string) error {
	if _, err := e.CrictlContext(ctx, "stopp", id); err != nil {
		return err
	}
	_, err := e.CrictlContext(ctx, "rmp", "-f", id)
	return err
}

// RemoveAllPods stops and removes every pod (and so its containers).
func (e *Env) RemoveAllPods(t testing.TB) {
	t.Helper()
	out, err := e.Crictl(t, "pods", "-q")
	if err != nil {
		t.Errorf("crictl pods: %v", err)
		return
	}
	for _, id := range strings.Fields(out) {
		if _, err := e.Crictl(t, "stopp", id); err != nil {
			t.Errorf("stopp %s: %v", id, err)
		}
		if _, err := e.Crictl(t, "rmp", "-f", id); err != nil {
			t.Errorf("rmp %s: %v", id, err)
		}
	}
}

// AssertClean checks that nothing of ours remains after a test: processes,
// mounts and sockets under containerd's state and the shim's, sandbox state,
// network namespaces CRI made, cgroups.
func (e *Env) AssertClean(t testing.TB) {
	t.Helper()
	e.RemoveAllPods(t)
	// Other suites (benchmarks) may run shims at the same time: only the
	// processes of this env's daemon and sandboxes count.
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := e.OurProcesses()
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of ours left running: %v", procs)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range []string{e.D.State, e.StateDir, filepath.Join(e.D.Root, "io.containerd.runtime.v2.task")} {
		if m := ctrd.MountsUnder(d); len(m) > 0 {
			t.Errorf("mounts left under %s: %v", d, m)
		}
		_ = filepath.WalkDir(d, func(p string, de os.DirEntry, err error) error {
			if err == nil && de.Type()&os.ModeSocket != 0 {
				t.Errorf("socket left: %s", p)
			}
			return nil
		})
	}
	if ents, err := os.ReadDir(filepath.Join(e.StateDir, Namespace)); err == nil && len(ents) > 0 {
		var left []string
		for _, x := range ents {
			left = append(left, x.Name())
		}
		t.Errorf("sandbox state left in %s: %v", e.StateDir, left)
	}
	if left := ctrd.CgroupsLeft("boxlite-k8s.io-"); len(left) > 0 {
		t.Errorf("cgroups left on the host: %v", left)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*/bxpod-*"); len(left) > 0 {
		t.Errorf("pod cgroups left on the host: %v", left)
	}
	// CRI's network namespaces are mounts under its state dir (netns/cni-*,
	// netns_mounts_under_state_dir), checked above.
	if out, err := e.Crictl(t, "ps", "-a", "-q"); err != nil || out != "" {
		t.Errorf("containers left in CRI: %v %q", err, out)
	}
}

// PodIP is the pod's IP address on the private network, as `crictl
// inspectp` reports it; the test fails when it reports none.
func (e *Env) PodIP(t testing.TB, pod string) string {
	t.Helper()
	var insp struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(e.Must(t, "inspectp", pod)), &insp); err != nil || insp.Status.Network.IP == "" {
		t.Fatalf("inspectp: no pod IP (%v)", err)
	}
	return insp.Status.Network.IP
}

// Bundle is the sandbox task's bundle in containerd's state.
func (e *Env) Bundle(id string) string {
	return filepath.Join(e.D.State, "io.containerd.runtime.v2.task", Namespace, id)
}

// OurProcesses lists the shims serving this env's containerd, and the VMMs
// and agents of sandboxes under its state directory (a VMM's working
// directory is its sandbox's; an agent's parent is its VMM, or it is gone).
func (e *Env) OurProcesses() []string {
	var out []string
	vmms := map[int]bool{}
	for _, p := range ctrd.OurProcesses() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
		// A shim has the containerd address in its command line, a VMM
		// (and what it forks) its jail, a sandbox directory of StateDir.
		if strings.Contains(string(cmdline), "\x00"+e.D.Address+"\x00") || strings.Contains(string(cmdline), "\x00-jail\x00"+e.StateDir+"/") {
			out = append(out, fmt.Sprintf("%d %s", p.Pid, p.Exe))
			vmms[p.Pid] = true
		}
	}
	for _, p := range ctrd.OurProcesses() {
		if filepath.Base(p.Exe) == "boxlite-agent" && vmms[ppid(p.Pid)] {
			out = append(out, fmt.Sprintf("%d %s", p.Pid, p.Exe))
		}
	}
	return out
}

func ppid(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	var n int
	fmt.Sscan(f[1], &n)
	return n
}
