package install

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/test/ctrd"
	toml "github.com/pelletier/go-toml/v2"
)

// privateContainerd is a containerd 2.4 configuration of its own (root,
// state, sockets, CNI dirs under dir) that imports the drop-ins matched by
// importGlob, and carries operator settings the import must not clobber.
type privateContainerd struct {
	dir, config, address, log string
}

func newPrivateContainerd(t *testing.T, dir, importGlob string) *privateContainerd {
	t.Helper()
	p := &privateContainerd{
		dir:     dir,
		config:  filepath.Join(dir, "containerd.toml"),
		address: filepath.Join(dir, "c.sock"),
		log:     filepath.Join(dir, "containerd.log"),
	}
	// restrict_oom_score_adj: this host gives no CAP_SYS_RESOURCE.
	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
imports = [%q]
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [%q]
  conf_dir = %q

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), importGlob, p.address, p.address+".ttrpc",
		filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "conf"))
	if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func containerdBin() string { return filepath.Join(ctrd.Deps(), "bin", "containerd") }
func crictlBin() string     { return filepath.Join(ctrd.Deps(), "bin", "crictl") }

// start runs the daemon until the test ends.
func (p *privateContainerd) start(t *testing.T) {
	t.Helper()
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(containerdBin(), "--config", p.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	logf.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("containerd log tail:\n%s", b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", p.address)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not listen on %s within 30s (log %s)", p.address, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func output(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, errb.String())
	}
	return out.Bytes()
}

// TestDropInRealContainerd installs into a scratch root with install.sh, then
// has the real containerd 2.4.2 import the installed drop-in (through a
// conf.d/*.toml glob, as the installed config.toml does) and checks what
// containerd made of it: `containerd config dump`, and the running CRI
// plugin's view through `crictl info` (the handlers the kubelet sees).
func TestDropInRealContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running containerd needs root: this test runs as uid", os.Geteuid())
	}
	ctrd.Require(t, containerdBin(), crictlBin())
	// A containerd of its own runs here: take turns with the suites, whose
	// leftover checks look at the whole host.
	unlock := ctrd.LockSuites()
	t.Cleanup(unlock)
	// Short paths: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bxd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range ctrd.MountsUnder(dir) {
			_ = exec.Command("umount", "-l", m).Run()
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	root := filepath.Join(dir, "host")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "install", "--root", root, "--bin", fakeBin(t))
	p := newPrivateContainerd(t, dir, filepath.Join(root, "etc/containerd/conf.d/*.toml"))

	t.Run("config dump", func(t *testing.T) {
		var dump map[string]any
		if err := toml.Unmarshal(output(t, containerdBin(), "--config", p.config, "config", "dump"), &dump); err != nil {
			t.Fatalf("config dump is not TOML: %v", err)
		}
		cri := get(t, dump, "plugins", "io.containerd.cri.v1.runtime")
		if get(t, cri, "restrict_oom_score_adj") != true {
			t.Error("the import clobbered restrict_oom_score_adj of the main config")
		}
		if get(t, cri, "containerd", "runtimes", "runc", "runtime_type") != "io.containerd.runc.v2" {
			t.Error("the import clobbered the main config's runc handler")
		}
		for _, h := range handlers {
			r := get(t, cri, "containerd", "runtimes", h.name)
			for _, c := range []struct {
				keys []any
				want any
			}{
				{[]any{"runtime_type"}, "io.containerd.boxlite.v2"},
				{[]any{"pod_annotations"}, []any{"io.boxlite.*"}},
				{[]any{"container_annotations"}, []any{"io.boxlite.*"}},
				{[]any{"privileged_without_host_devices"}, true},
				{[]any{"options"}, map[string]any{"ConfigPath": h.configPath}},
			} {
				if got := get(t, r, c.keys...); !reflect.DeepEqual(got, c.want) {
					t.Errorf("%s %v = %#v, want %#v", h.name, c.keys, got, c.want)
				}
			}
		}
	})

	t.Run("crictl info", func(t *testing.T) {
		p.start(t)
		var info map[string]any
		raw := output(t, crictlBin(), "--runtime-endpoint", "unix://"+p.address, "--timeout", "20s", "info")
		if err := json.Unmarshal(raw, &info); err != nil {
			t.Fatalf("crictl info is not JSON: %v\n%s", err, raw)
		}
		cfg := get(t, info, "config")
		if get(t, cfg, "restrictOOMScoreAdj") != true {
			t.Error("restrictOOMScoreAdj lost")
		}
		for _, h := range handlers {
			r := get(t, cfg, "containerd", "runtimes", h.name)
			for _, c := range []struct {
				keys []any
				want any
			}{
				{[]any{"runtimeType"}, "io.containerd.boxlite.v2"},
				{[]any{"PodAnnotations"}, []any{"io.boxlite.*"}},
				{[]any{"ContainerAnnotations"}, []any{"io.boxlite.*"}},
				{[]any{"privileged_without_host_devices"}, true},
				{[]any{"options"}, map[string]any{"ConfigPath": h.configPath}},
			} {
				if got := get(t, r, c.keys...); !reflect.DeepEqual(got, c.want) {
					t.Errorf("%s %v = %#v, want %#v", h.name, c.keys, got, c.want)
				}
			}
		}
		var names []string
		for _, rh := range get(t, info, "runtimeHandlers").([]any) {
			if n, ok := rh.(map[string]any)["name"].(string); ok {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if want := []string{"boxlite", "boxlite-net", "runc"}; !reflect.DeepEqual(names, want) {
			t.Errorf("CRI runtime handlers %v, want %v", names, want)
		}
	})
}
