// Package ctrd runs a private containerd 2.4 daemon for end-to-end tests and
// drives it with the real ctr binary. It owns the daemon's root, state,
// sockets and config under a test's temporary directory, and checks after
// each test that nothing of ours (shim, VMM, agent, mount, socket) is left.
// It must not be imported by product code.
package ctrd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Deps is the dependency cache `make deps` fills.
func Deps() string {
	if d := os.Getenv("BOXLITE_DEPS"); d != "" {
		return d
	}
	return "/var/cache/boxlite-deps"
}

// RepoRoot is the directory holding go.mod, found upwards from the test's
// working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// BinDir holds the shim binaries `make` built.
func BinDir(t testing.TB) string {
	if d := os.Getenv("BOXLITE_BIN"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), "bin")
}

// Require fails the test when a file the suite needs is missing, naming the
// make target that provides it. These are build products, not host features,
// so their absence is a failure, never a skip.
func Require(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run `make deps` and `make` first (%v)", p, err)
		}
	}
}

// Daemon is a running private containerd.
type Daemon struct {
	t       testing.TB
	Dir     string
	Address string
	Root    string
	State   string
	Log     string
	PATH    string
	cmd     *exec.Cmd
}

// Options tune the daemon's config.
type Options struct {
	// ExtraConfig is appended to the generated config.toml (config version 3).
	ExtraConfig string
	// CRI keeps the CRI plugin enabled (off by default: ctr tests need no CRI).
	CRI bool
	// Imports are files (or globs) the config imports, as an operator's
	// config imports /etc/containerd/conf.d/*.toml.
	Imports []string
	// BinDir holds the shim binaries containerd runs (first on its PATH);
	// "" = BinDir(t), the repository's build.
	BinDir string
}

// Start runs containerd with its own root, state, sockets and config under a
// fresh temporary directory, and stops it (and checks for leftovers) in
// t.Cleanup.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd end-to-end tests need root: this test runs as uid", os.Geteuid())
	}
	containerd := filepath.Join(Deps(), "bin", "containerd")
	bin := o.BinDir
	if bin == "" {
		bin = BinDir(t)
	}
	Require(t, containerd, filepath.Join(Deps(), "bin", "ctr"), filepath.Join(bin, "containerd-shim-boxlite-v2"))

	// Short paths: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bxc")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{
		t:       t,
		Dir:     dir,
		Address: filepath.Join(dir, "c.sock"),
		Root:    filepath.Join(dir, "root"),
		State:   filepath.Join(dir, "state"),
		Log:     filepath.Join(dir, "containerd.log"),
		PATH:    strings.Join([]string{bin, filepath.Join(Deps(), "bin"), os.Getenv("PATH")}, ":"),
	}
	disabled := `disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim", "io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]`
	if o.CRI {
		disabled = `disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]`
	}
	imports := ""
	if len(o.Imports) > 0 {
		q := make([]string, len(o.Imports))
		for i, p := range o.Imports {
			q[i] = strconv.Quote(p)
		}
		imports = "imports = [" + strings.Join(q, ", ") + "]"
	}
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
%s
%s

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "debug"
%s
`, d.Root, d.State, imports, disabled, d.Address, d.Address+".ttrpc", o.ExtraConfig)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.Log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(containerd, "--config", cfgPath)
	d.cmd.Env = append(os.Environ(), "PATH="+d.PATH)
	d.cmd.Stdout = logf
	d.cmd.Stderr = logf
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	logf.Close()
	t.Cleanup(d.stop)

	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", d.Address)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not listen on %s within 30s; log:\n%s", d.Address, d.tailLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

func (d *Daemon) tailLog() string {
	b, _ := os.ReadFile(d.Log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func (d *Daemon) stop() {
	t := d.t
	if d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
	}
	if t.Failed() {
		t.Logf("containerd log tail:\n%s", d.tailLog())
	}
	// Mounts the daemon left (snapshots) are containerd's, not ours, but
	// they must go before the directory can.
	for _, m := range MountsUnder(d.Dir) {
		_ = exec.Command("umount", "-l", m).Run()
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Errorf("remove %s: %v", d.Dir, err)
	}
}

// Ctr runs the real ctr against the daemon and returns its combined output.
func (d *Daemon) Ctr(ctx context.Context, args ...string) (string, error) {
	return d.CtrIn(ctx, nil, args...)
}

// CtrStdout runs ctr and returns only what it printed on stdout; stderr
// (warnings, errors) comes back inside the error.
func (d *Daemon) CtrStdout(ctx context.Context, args ...string) (string, error) {
	cmd := d.ctrCommand(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// CtrCommand is the command running the real ctr against the daemon with
// args; the caller sets its stdio.
func (d *Daemon) CtrCommand(ctx context.Context, args ...string) *exec.Cmd {
	return d.ctrCommand(ctx, args...)
}

func (d *Daemon) ctrCommand(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--address", d.Address, "--namespace", "boxlite-test"}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(Deps(), "bin", "ctr"), full...)
	cmd.Env = append(os.Environ(), "PATH="+d.PATH)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// CtrIn is Ctr with stdin.
func (d *Daemon) CtrIn(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := d.ctrCommand(ctx, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// MountsUnder lists mount points at or below dir, deepest first.
func MountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	// "/" has every mount below it (not only those starting "//").
	below := strings.TrimSuffix(dir, "/") + "/"
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, below) {
			out = append(out, mp)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// DoubleWords says what a suite on the libkrun test double runs on; each
// suite prints which engine its sandboxes ran on.
const DoubleWords = "the libkrun test double (test/libkrun-double, bin/test/libkrun.so.1): " +
	"libkrun's API with the guest agent run as a host process, no VM and no guest kernel; " +
	"what needs a guest kernel is in the guest suite (test/guest)"
