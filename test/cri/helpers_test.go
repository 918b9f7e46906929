package cri

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/runtime/sandbox"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/ocitest"
)

const (
	// pauseImage is the pod sandbox image: the busybox test image whose
	// command is `sleep`, imported locally and pinned as CRI's sandbox image.
	pauseImage = "docker.io/boxlite/pause:test"
	bridgeName = "bxcri0"
	podSubnet  = "10.87.77.0/24"
)

// env is one private containerd with CRI, the boxlite drop-in, a CNI bridge
// network, the busybox and pause images, and crictl pointed at it.
type env struct {
	d        *ctrd.Daemon
	dir      string // configs, shim state and cache, CNI, logs
	stateDir string
	cacheDir string
	crictlCf string
	logDir   string
}

// dropIn is deploy/containerd/boxlite.toml with each handler's ConfigPath
// pointing at a test config (the test double, private state and cache).
func dropIn(t *testing.T, cfgs map[string]string) string {
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

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("CRI tests need root: this test runs as uid", os.Geteuid())
	}
	bin := ctrd.BinDir(t)
	deps := ctrd.Deps()
	ctrd.Require(t, filepath.Join(bin, "test", "libkrun.so.1"), filepath.Join(bin, "boxlite-vmm"), filepath.Join(bin, "boxlite-agent"),
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
		_ = exec.Command("ip", "link", "del", bridgeName).Run()
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
	e := &env{dir: dir, stateDir: stateDir, cacheDir: filepath.Join(dir, "cache"), logDir: filepath.Join(dir, "logs")}
	double, _ := filepath.Abs(filepath.Join(bin, "test", "libkrun.so.1"))
	base := fmt.Sprintf("libkrun_path = %q\nstate_dir = %q\ncache_dir = %q\n", double, e.stateDir, e.cacheDir)
	lean := e.write(t, "config.toml", base+"[kernel]\ndefault = \"lean\"\n")
	// boxlite-net's config also lets pods size their VM by annotation.
	net := e.write(t, "config-net.toml", base+"[kernel]\ndefault = \"net\"\n[annotations]\nenabled = [\"io.boxlite.kernel\", \"io.boxlite.memory_mib\"]\n")
	cniConf := filepath.Join(dir, "cni", "conf")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		t.Fatal(err)
	}
	e.write(t, "cni/conf/10-bxcri.conflist", fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "bxcri",
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}},
    {"type": "loopback"}
  ]
}
`, bridgeName, podSubnet, filepath.Join(dir, "cni", "ipam")))
	extra := fmt.Sprintf(`
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [%q]
  conf_dir = %q

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = %q
%s`, filepath.Join(deps, "cni", "bin"), cniConf, pauseImage,
		dropIn(t, map[string]string{"/etc/boxlite/config.toml": lean, "/etc/boxlite/config-net.toml": net}))
	e.d = ctrd.Start(t, ctrd.Options{CRI: true, ExtraConfig: extra})
	e.crictlCf = e.write(t, "crictl.yaml", fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", e.d.Address, e.d.Address))
	e.importImages(t)
	return e
}

func (e *env) write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
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
func (e *env) importImages(t *testing.T) {
	t.Helper()
	busybox := filepath.Join(ctrd.Deps(), "busybox", "busybox")
	tmp := t.TempDir()
	bb := filepath.Join(tmp, "busybox.tar")
	if err := ocitest.BusyboxImage(busybox, bb, ocitest.ImageName); err != nil {
		t.Fatal(err)
	}
	pause := filepath.Join(tmp, "pause.tar")
	if err := ocitest.BusyboxImage(busybox, pause, pauseImage); err != nil {
		t.Fatal(err)
	}
	if err := setCmd(pause, []string{"sleep", "2147483647"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, a := range []string{bb, pause} {
		cmd := exec.CommandContext(ctx, filepath.Join(ctrd.Deps(), "bin", "ctr"), "--address", e.d.Address, "--namespace", "k8s.io", "image", "import", a)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ctr image import %s: %v\n%s", a, err, out)
		}
	}
}

// setCmd rewrites an OCI image-layout archive of one image so that its
// config's Cmd is cmd (new config, manifest and index digests).
func setCmd(archive string, cmd []string) error {
	b, err := os.ReadFile(archive)
	if err != nil {
		return err
	}
	files := map[string][]byte{}
	headers := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		files[h.Name] = data
		headers[h.Name] = h
		order = append(order, h.Name)
	}
	blob := func(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
	put := func(data []byte) string {
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		if _, ok := files[blob(d)]; !ok {
			order = append(order, blob(d))
		}
		files[blob(d)] = data
		return d
	}
	var index map[string]any
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		return err
	}
	mdesc := index["manifests"].([]any)[0].(map[string]any)
	var manifest map[string]any
	if err := json.Unmarshal(files[blob(mdesc["digest"].(string))], &manifest); err != nil {
		return err
	}
	cdesc := manifest["config"].(map[string]any)
	var cfg map[string]any
	if err := json.Unmarshal(files[blob(cdesc["digest"].(string))], &cfg); err != nil {
		return err
	}
	cfg["config"].(map[string]any)["Cmd"] = cmd
	cb, _ := json.Marshal(cfg)
	cdesc["digest"], cdesc["size"] = put(cb), len(cb)
	mb, _ := json.Marshal(manifest)
	mdesc["digest"], mdesc["size"] = put(mb), len(mb)
	files["index.json"], _ = json.Marshal(index)

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, name := range order {
		h := headers[name]
		if h == nil || h.Typeflag == tar.TypeReg {
			h = &tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(files[name]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(archive, out.Bytes(), 0o644)
}

// crictl runs the real crictl against the daemon; stdout comes back, stderr
// goes into the error.
func (e *env) crictl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(ctrd.Deps(), "bin", "crictl"), append([]string{"--config", e.crictlCf}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+e.d.PATH)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// must is crictl that fails the test on error.
func (e *env) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.crictl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jsonFile writes v as JSON under the env's directory.
func (e *env) jsonFile(t *testing.T, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return e.write(t, name, string(b))
}

// podConfig is a crictl pod sandbox config (CRI PodSandboxConfig as JSON).
func (e *env) podConfig(name string, annotations map[string]string, linux map[string]any) map[string]any {
	c := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 1},
		"log_directory": filepath.Join(e.logDir, name),
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

// containerConfig is a crictl container config (CRI ContainerConfig as JSON).
func containerConfig(name string, annotations map[string]string, command ...string) map[string]any {
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

// removeAllPods stops and removes every pod (and so its containers).
func (e *env) removeAllPods(t *testing.T) {
	t.Helper()
	out, err := e.crictl(t, "pods", "-q")
	if err != nil {
		t.Errorf("crictl pods: %v", err)
		return
	}
	for _, id := range strings.Fields(out) {
		if _, err := e.crictl(t, "stopp", id); err != nil {
			t.Errorf("stopp %s: %v", id, err)
		}
		if _, err := e.crictl(t, "rmp", "-f", id); err != nil {
			t.Errorf("rmp %s: %v", id, err)
		}
	}
}

// assertClean checks that nothing of ours remains after a test: processes,
// mounts and sockets under containerd's state and the shim's, sandbox state,
// network namespaces CRI made, cgroups.
func (e *env) assertClean(t *testing.T) {
	t.Helper()
	e.removeAllPods(t)
	// Other suites (benchmarks) may run shims at the same time: only the
	// processes of this env's daemon and sandboxes count.
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := e.ourProcesses()
		if len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of ours left running: %v", procs)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range []string{e.d.State, e.stateDir, filepath.Join(e.d.Root, "io.containerd.runtime.v2.task")} {
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
	if ents, err := os.ReadDir(filepath.Join(e.stateDir, "k8s.io")); err == nil && len(ents) > 0 {
		var left []string
		for _, x := range ents {
			left = append(left, x.Name())
		}
		t.Errorf("sandbox state left in %s: %v", e.stateDir, left)
	}
	if left := ctrd.CgroupsLeft("boxlite-k8s.io-"); len(left) > 0 {
		t.Errorf("cgroups left on the host: %v", left)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*/bxpod-*"); len(left) > 0 {
		t.Errorf("pod cgroups left on the host: %v", left)
	}
	// CRI's network namespaces are mounts under its state dir (netns/cni-*,
	// netns_mounts_under_state_dir), checked above.
	if out, err := e.crictl(t, "ps", "-a", "-q"); err != nil || out != "" {
		t.Errorf("containers left in CRI: %v %q", err, out)
	}
}

// bundle is the sandbox task's bundle in containerd's state.
func (e *env) bundle(id string) string {
	return filepath.Join(e.d.State, "io.containerd.runtime.v2.task", "k8s.io", id)
}

// record is the pod's sandbox state record (the VMM's PID, its directory).
func (e *env) record(t *testing.T, podID string) sandbox.Record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.bundle(podID), sandbox.RecordName))
	if err != nil {
		t.Fatalf("sandbox state record of pod %s: %v", podID, err)
	}
	var r sandbox.Record
	if err := json.Unmarshal(b, &r); err != nil || r.VMMPid <= 0 {
		t.Fatalf("sandbox state record %s: %v", b, err)
	}
	return r
}

// calls reads the test double's call log of a pod's VMM: the last line of
// each call.
func calls(t *testing.T, r sandbox.Record) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.Dir, "vmm", "krun-calls.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var c map[string]any
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("call log line %q: %v", l, err)
		}
		out[fmt.Sprint(c["call"])] = c
	}
	return out
}

// mappedKernel is the SHA-256 of the libkrunfw.so.5 the VMM pid has mapped.
func mappedKernel(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatalf("maps of VMM %d: %v", pid, err)
	}
	var path string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && strings.HasSuffix(f[5], "libkrunfw.so.5") {
			if path != "" && path != f[5] {
				t.Fatalf("VMM %d maps two kernel libraries: %s and %s", pid, path, f[5])
			}
			path = f[5]
		}
	}
	if path == "" {
		t.Fatalf("VMM %d has no libkrunfw.so.5 mapped", pid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// kernelSHAs are the SHA-256 prefixes `kernels` reports for each variant.
func kernelSHAs(t *testing.T, cfg string) map[string]string {
	t.Helper()
	out, err := exec.Command(filepath.Join(ctrd.BinDir(t), "containerd-shim-boxlite-v2"), "kernels", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("kernels: %v\n%s", err, out)
	}
	shas := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] != "VARIANT" {
			shas[f[0]] = f[3]
		}
	}
	return shas
}

// ourProcesses lists the shims serving this env's containerd, and the VMMs
// and agents of sandboxes under its state directory (a VMM's working
// directory is its sandbox's; an agent's parent is its VMM, or it is gone).
func (e *env) ourProcesses() []string {
	var out []string
	vmms := map[int]bool{}
	for _, p := range ctrd.OurProcesses() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid))
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", p.Pid))
		if strings.Contains(string(cmdline), "\x00"+e.d.Address+"\x00") || strings.HasPrefix(cwd, e.stateDir+"/") {
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
