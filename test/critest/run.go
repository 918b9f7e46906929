// Package critest runs the official CRI validation suite (critest, from
// cri-tools) against a private containerd 2.4 with two handlers, containerd's
// runc and boxlite (test/crid: the drop-in, the libkrun test double), and
// compares them spec by spec. Every image critest pulls is built locally
// under its upstream name and served by a local registry on loopback, which
// containerd reaches through registry hosts configuration: nothing leaves the
// machine. What critest leaves on the host when a spec fails (bind mounts,
// temporary directories, SysV shared memory segments) is removed after each
// run. It must not be imported by product code.
package critest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxlite/boxlite-shim/test/crid"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/ocitest"
)

// Env is the private containerd with CRI, the runc and boxlite handlers,
// and the local registry holding critest's images.
type Env struct {
	*crid.Env
	Registry *Registry
	critest  string
}

// New builds the images, starts the registry and containerd.
func New(t *testing.T) *Env {
	t.Helper()
	deps := ctrd.Deps()
	critest, registry, runc := filepath.Join(deps, "bin", "critest"), filepath.Join(deps, "bin", "registry"), filepath.Join(deps, "bin", "runc")
	ctrd.Require(t, critest, registry, runc, filepath.Join(deps, "bin", "containerd-shim-runc-v2"), filepath.Join(deps, "cni", "bin", "portmap"))
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft (Debian's nftables) is missing: the host-port spec's portmap plugin needs it; run `make deps` (%v)", err)
	}
	removeHostportTables(t)
	dir := t.TempDir()
	reg := StartRegistry(t, registry, dir)
	pushImages(t, reg, map[string]string{"nnp": buildStatic(t, dir, "nnp"), "pause": buildStatic(t, dir, "pause")})
	hosts := reg.HostsConfig(t, filepath.Join(dir, "hosts"), Hosts)
	engineCfg := filepath.Join(dir, "config-engine.toml")
	cri := crid.New(t, crid.Options{SandboxImage: SandboxImage, ExtraCNIPlugins: []string{portmap}, ExtraCRIConfig: fmt.Sprintf(`
[plugins."io.containerd.cri.v1.images".registry]
  config_path = %q
%s%s`, hosts, crid.RuncHandler(), engineHandler(engineCfg))})
	writeEngineConfig(t, engineCfg, cri)
	return &Env{Env: cri, Registry: reg, critest: critest}
}

// EngineHandler is the CRI runtime handler whose pods boot on the emulated
// engine (test/libkrun-qemu: the lean kernel under QEMU TCG beneath
// libkrun's API), for the specs that need a guest kernel.
const EngineHandler = "boxlite-engine"

// engineHandler is EngineHandler's CRI runtime table, its shim config at
// cfg (the shim reads it at each start: writeEngineConfig writes it once the
// daemon's directories are known).
func engineHandler(cfg string) string {
	return fmt.Sprintf(`
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.%[1]s]
  runtime_type = "io.containerd.boxlite.v2"
  privileged_without_host_devices = true
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.%[1]s.options]
    ConfigPath = %[2]q
`, EngineHandler, cfg)
}

// writeEngineConfig writes EngineHandler's shim config: the emulated
// engine as libkrun, the lean kernel, and the boxlite handlers' state and
// cache directories (short: agent sockets live under the state directory;
// the environment's AssertClean checks it).
func writeEngineConfig(t *testing.T, cfg string, cri *crid.Env) {
	t.Helper()
	lib, err := filepath.Abs(filepath.Join(ctrd.BinDir(t), "test", "libkrun-qemu", "libkrun.so.1"))
	if err != nil {
		t.Fatal(err)
	}
	ctrd.Require(t, lib)
	if err := os.WriteFile(cfg, []byte(ctrd.ShimConfig(lib, cri.StateDir, cri.CacheDir)+"[kernel]\ndefault = \"lean\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// buildStatic builds test/critest/<name> as a static binary and returns
// its bytes.
func buildStatic(t *testing.T, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./"+name)
	cmd.Dir = filepath.Join(ctrd.RepoRoot(t), "test", "critest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// portmap gives pods their host ports (critest's port mapping spec), with
// nftables rules in the host's network namespace, in portmap's table.
const portmap = `{"type": "portmap", "capabilities": {"portMappings": true}, "backend": "nftables"}`

// removeHostportTables removes portmap's nftables tables when the test
// ends: the plugin removes its rules for each pod, not its table. Tables
// there before the test are left alone.
func removeHostportTables(t *testing.T) {
	t.Helper()
	var had []string
	for _, fam := range []string{"ip", "ip6"} {
		if exec.Command("nft", "list", "table", fam, "cni_hostport").Run() == nil {
			had = append(had, fam)
		}
	}
	t.Cleanup(func() {
		for _, fam := range []string{"ip", "ip6"} {
			if !slices.Contains(had, fam) && exec.Command("nft", "list", "table", fam, "cni_hostport").Run() == nil {
				if out, err := exec.Command("nft", "delete", "table", fam, "cni_hostport").CombinedOutput(); err != nil {
					t.Errorf("nft delete table %s cni_hostport: %v: %s", fam, err, out)
				}
			}
		}
	})
}

func pushImages(t *testing.T, reg *Registry, bins map[string]string) {
	t.Helper()
	base, err := ocitest.BusyboxLayer(filepath.Join(ctrd.Deps(), "busybox", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, def := range imageSet(bins) {
		img, err := def.build(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range def.names {
			_, repo, tag := splitRef(ref)
			if err := reg.Push(ctx, repo, tag, img); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Skips are the specs skipped on both handlers, with why. They are what
// this host or this offline setup cannot give either runtime.
var Skips = []Exemption{
	// The reference pins a digest of cri-tools' published image; no image
	// built here has it, and no registry outside is reachable.
	{Spec: "public image with digest should be pulled and removed", Why: "the image's digest is fixed upstream: it cannot be rebuilt offline"},
	// The spec masks /bin/ls and expects the shell's "Permission denied";
	// Debian's busybox-static shell (FEATURE_SH_STANDALONE) runs its ls
	// applet without a PATH lookup, so no image built here can show it.
	// Masked paths are tested on the agent (runtime/agent TestRun).
	{Spec: "runtime should support MaskedPaths", Why: "the test image's shell runs applets without looking them up in PATH"},
}

// Run runs critest on handler, writing its JSON report and log under out,
// and returns the report. Whatever critest left on the host is removed.
// With focus, only the specs whose names contain one of them run.
func (e *Env) Run(t *testing.T, handler, out string, timeout time.Duration, focus ...string) map[string]Result {
	t.Helper()
	before := snapshotHost()
	defer cleanHost(t, before)
	report := filepath.Join(out, handler+".json")
	logPath := filepath.Join(out, handler+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	var skips []string
	for _, s := range Skips {
		skips = append(skips, regexp.QuoteMeta(s.Spec))
	}
	sock := "unix://" + e.D.Address
	args := []string{
		"-runtime-endpoint", sock, "-image-endpoint", sock,
		"-runtime-handler", handler,
		"-config", filepath.Join(out, "no-crictl.yaml"),
		"-ginkgo.json-report", report,
		"-ginkgo.no-color",
		"-ginkgo.timeout", timeout.String(),
		"-ginkgo.skip", strings.Join(skips, "|"),
	}
	if len(focus) > 0 {
		var f []string
		for _, s := range focus {
			f = append(f, regexp.QuoteMeta(s))
		}
		args = append(args, "-ginkgo.focus", strings.Join(f, "|"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.critest, args...)
	cmd.Dir = out
	cmd.Env = append(os.Environ(), "PATH="+e.D.PATH)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	t.Logf("critest on %s: %v in %s (log: %s)", handler, exitText(err), time.Since(start).Round(time.Second), logPath)
	res, rerr := ReadReport(report)
	if rerr != nil {
		t.Fatalf("critest on %s: %v (exit: %v); log %s", handler, rerr, err, logPath)
	}
	return res
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// hostState is what critest may leave behind: mount points, SysV shared
// memory segments, and directories in the temporary directory.
type hostState struct {
	mounts map[string]bool
	shm    map[int]bool
	tmp    map[string]bool
}

func snapshotHost() hostState {
	s := hostState{mounts: map[string]bool{}, shm: map[int]bool{}, tmp: map[string]bool{}}
	for _, m := range ctrd.MountsUnder("/") {
		s.mounts[m] = true
	}
	for _, seg := range shmSegments() {
		s.shm[seg.id] = true
	}
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		s.tmp[e.Name()] = true
	}
	return s
}

// critestTemp are the names critest gives its temporary directories
// (os.MkdirTemp("", prefix) in pkg/validate and cmd/critest).
var critestTemp = regexp.MustCompile(`^(test[0-9a-f]{64}|podLogTest|seccomp-tests|cri-test|apparmor)[0-9]+$`)

// cleanHost unmounts what is mounted in the temporary directories critest
// made since before, removes those directories, and the shared
// memory segments made since by processes that are gone (ipcmk).
func cleanHost(t *testing.T, before hostState) {
	t.Helper()
	var left []string
	tmp := os.TempDir()
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		if before.tmp[e.Name()] || !critestTemp.MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(tmp, e.Name())
		for _, m := range ctrd.MountsUnder(p) { // deepest first
			if !before.mounts[m] {
				left = append(left, "mount "+m)
				if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
					t.Errorf("unmount critest's %s: %v", m, err)
				}
			}
		}
		left = append(left, "directory "+p)
		if err := os.RemoveAll(p); err != nil {
			t.Errorf("remove critest's %s: %v", p, err)
		}
	}
	for _, seg := range shmSegments() {
		if before.shm[seg.id] || seg.attached > 0 || unix.Kill(seg.creator, 0) == nil {
			continue
		}
		left = append(left, fmt.Sprintf("shm segment %d (key %#x)", seg.id, seg.key))
		if _, _, e := unix.Syscall(unix.SYS_SHMCTL, uintptr(seg.id), uintptr(unix.IPC_RMID), 0); e != 0 {
			t.Errorf("remove critest's shm segment %d: %v", seg.id, e)
		}
	}
	sort.Strings(left)
	if len(left) > 0 {
		t.Logf("removed what critest left on the host: %s", strings.Join(left, "; "))
	}
}

type shmSegment struct {
	key      int64
	id       int
	creator  int
	attached int
}

// shmSegments reads /proc/sysvipc/shm (key shmid perms size cpid lpid
// nattch ...).
func shmSegments() []shmSegment {
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []shmSegment
	s := bufio.NewScanner(f)
	s.Scan() // header
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 7 {
			continue
		}
		key, _ := strconv.ParseInt(f[0], 10, 64)
		id, _ := strconv.Atoi(f[1])
		cpid, _ := strconv.Atoi(f[4])
		nattch, _ := strconv.Atoi(f[6])
		out = append(out, shmSegment{key: key, id: id, creator: cpid, attached: nattch})
	}
	return out
}
