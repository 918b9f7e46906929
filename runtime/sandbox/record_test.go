package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/runtime/podnet"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

func writeRecord(t *testing.T, bundle string, r Record) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, RecordName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCleanupWithoutRecord(t *testing.T) {
	if err := Cleanup(context.Background(), t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

func TestCleanupRemovesDirAndRecordTwice(t *testing.T) {
	bundle, base := t.TempDir(), t.TempDir()
	dir := filepath.Join(base, "ns", "sb1")
	if err := os.MkdirAll(filepath.Join(dir, "root", "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeRecord(t, bundle, Record{ID: "sb1", Dir: dir})
	for i := 0; i < 2; i++ {
		if err := Cleanup(context.Background(), bundle); err != nil {
			t.Fatalf("cleanup #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox dir left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bundle, RecordName)); !os.IsNotExist(err) {
		t.Errorf("record left: %v", err)
	}
}

// A VMM PID that now belongs to some unrelated process is left alone.
func TestCleanupSparesReusedPid(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	bundle := t.TempDir()
	writeRecord(t, bundle, Record{ID: "sb2", Dir: filepath.Join(t.TempDir(), "x"), VMMPid: cmd.Process.Pid})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Cleanup(ctx, bundle); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("an unrelated process with the recorded PID was killed: %v", err)
	}
}

// A VMM the record does not name (the shim died while booting) is found by
// its jail (-jail <the sandbox directory> in its command line; it is a
// boxlite-vmm executable, PID 1 of its own PID namespace), and killed.
func TestCleanupFindsUnrecordedVMM(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH: nothing to stand in for an unrecorded VMM process")
	}
	base := t.TempDir()
	fake := filepath.Join(base, "boxlite-vmm")
	b, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "ns", "sb3")
	if err := os.MkdirAll(filepath.Join(dir, "vmm"), 0o755); err != nil {
		t.Fatal(err)
	}
	// sh stays the process (a command follows sleep); "-jail DIR" are its
	// $0 and $1, as in a VMM's command line.
	cmd := exec.Command(fake, "-c", "sleep 60; :", "-jail", dir)
	cmd.Dir = filepath.Join(dir, "vmm")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	bundle := t.TempDir()
	writeRecord(t, bundle, Record{ID: "sb3", Dir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := Cleanup(ctx, bundle); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the unrecorded VMM was not killed")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sandbox dir left: %v", err)
	}
}

// What a crashed shim made in the pod's network namespace (the TAP, the
// pod link's ingress redirection) goes with `shim delete`; a TAP recorded
// before the pod link was known goes too.
func TestCleanupDetachesPodNetwork(t *testing.T) {
	for _, podLink := range []string{"eth0", ""} {
		t.Run("pod link "+podLink, func(t *testing.T) {
			ns := netnstest.New(t)
			netnstest.Sh(t, ns, "ip link add eth0 type veth peer name peer0 && ip link set eth0 up && ip addr add 10.9.0.2/24 dev eth0 && ip route add default via 10.9.0.1")
			att, err := podnet.Attach(ns)
			if err != nil {
				t.Fatal(err)
			}
			bundle := t.TempDir()
			writeRecord(t, bundle, Record{ID: "sb3", Dir: filepath.Join(t.TempDir(), "x"), Net: &podnet.Attachment{NetNS: ns, PodLink: podLink, Tap: att.Tap}})
			if err := Cleanup(context.Background(), bundle); err != nil {
				t.Fatal(err)
			}
			out := netnstest.Sh(t, ns, "ip -o link show; tc qdisc show dev eth0")
			if strings.Contains(out, podnet.TapName) || podLink != "" && strings.Contains(out, "ingress") {
				t.Errorf("left in the pod's network namespace:\n%s", out)
			}
		})
	}
}
