package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/runtime/cgmount"
	"github.com/boxlite/boxlite-shim/runtime/vmm"
)

// markerLib builds a shared library exporting the given marker symbols (as
// the host double and the emulated engine export theirs).
func markerLib(t *testing.T, name string, symbols ...string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "lib.c")
	body := "int krun_create_ctx(void) { return 0; }\n"
	for _, s := range symbols {
		body += "int " + s + "(void) { return 1; }\n"
	}
	if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	if b, err := exec.Command("cc", "-shared", "-fPIC", "-Wl,-soname,libkrun.so.1", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, b)
	}
	return out
}

// Which libkrun a sandbox has decides how it treats its guest: the host
// double's agent runs on the host and gets a cgroup root of its own there;
// the emulated engine's guest is a real one (no host cgroup) that boots
// slowly (a longer ready timeout); vm.ready_timeout_s, when set, holds for
// every library.
func TestPrepareByLibrary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Prepare mounts the sandbox's tmpfs: needs root")
	}
	double := markerLib(t, "double.so", "krun_test_double")
	engine := markerLib(t, "engine.so", "krun_test_double", "krun_test_engine_qemu")
	plain := markerLib(t, "plain.so")
	if vmm.IsTestEngine(double) || !vmm.IsTestEngine(engine) || vmm.IsTestEngine(plain) || !vmm.IsTestDouble(engine) {
		t.Fatalf("markers: IsTestEngine(double, engine, plain) = %v %v %v, IsTestDouble(engine) = %v",
			vmm.IsTestEngine(double), vmm.IsTestEngine(engine), vmm.IsTestEngine(plain), vmm.IsTestDouble(engine))
	}
	blob := filepath.Join(t.TempDir(), "libkrunfw.so.5")
	agentBin := filepath.Join(t.TempDir(), "boxlite-agent")
	for _, f := range []string{blob, agentBin} {
		if err := os.WriteFile(f, []byte("stand-in"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name         string
		libkrun      string
		readyS       int
		wantDouble   bool
		wantEngine   bool
		wantReady    time.Duration
		wantCgroupIn bool // the record names a host cgroup for the agent
	}{
		{name: "libkrun", libkrun: "", wantReady: 10 * time.Second},
		{name: "a library without markers", libkrun: plain, wantReady: 10 * time.Second},
		{name: "host double", libkrun: double, wantDouble: true, wantReady: 10 * time.Second, wantCgroupIn: true},
		{name: "emulated engine", libkrun: engine, wantEngine: true, wantReady: 120 * time.Second},
		{name: "emulated engine, timeout set", libkrun: engine, readyS: 7, wantEngine: true, wantReady: 7 * time.Second},
		{name: "libkrun, timeout set", libkrun: "", readyS: 300, wantReady: 300 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.LibkrunPath = tc.libkrun
			cfg.StateDir = t.TempDir()
			cfg.CacheDir = t.TempDir()
			cfg.Kernel.Paths = map[kernel.Name]string{kernel.Lean: blob}
			cfg.VM.ReadyTimeoutS = tc.readyS
			bundle := t.TempDir()
			s, err := Prepare(context.Background(), Options{
				Namespace: "ns", ID: "sb", Config: cfg, Request: config.Request{Kernel: kernel.Lean, CPUs: 1, MemoryMiB: 512},
				Bundle: bundle, AgentBinary: agentBin,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := s.Stop(context.Background()); err != nil {
					t.Error(err)
				}
			})
			if s.double != tc.wantDouble || s.engine != tc.wantEngine {
				t.Errorf("double %v engine %v, want %v %v", s.double, s.engine, tc.wantDouble, tc.wantEngine)
			}
			if got := s.readyTimeout(); got != tc.wantReady {
				t.Errorf("ready timeout %s, want %s", got, tc.wantReady)
			}
			switch {
			case tc.wantCgroupIn && s.record.CgroupName != "boxlite-ns-sb":
				t.Errorf("record's cgroup name %q, want boxlite-ns-sb", s.record.CgroupName)
			case tc.wantCgroupIn && cgmount.Unified() != "" && s.record.HostCgroup != filepath.Join(cgmount.Unified(), "boxlite-ns-sb"):
				t.Errorf("record's host cgroup %q", s.record.HostCgroup)
			case !tc.wantCgroupIn && (s.record.CgroupName != "" || s.record.HostCgroup != "" || s.hostCG != ""):
				t.Errorf("a guest that is not on the host got host cgroups: %+v", s.record)
			}
		})
	}
}
