package install

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	toml "github.com/pelletier/go-toml/v2"
)

// deployDir is the repository's deploy/ directory.
func deployDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(ctrd.RepoRoot(t), "deploy")
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The handlers of the drop-in, with the shim config each one names.
var handlers = []struct {
	name, configPath, file string
	kernel                 kernel.Name
}{
	{"boxlite", "/etc/boxlite/config.toml", "config.toml", kernel.Lean},
	{"boxlite-net", "/etc/boxlite/config-net.toml", "config-net.toml", kernel.Net},
}

// TestShimConfigs parses the two shim configurations with the shim's own
// loader: they are the built-in defaults except the default kernel.
func TestShimConfigs(t *testing.T) {
	for _, h := range handlers {
		t.Run(h.name, func(t *testing.T) {
			path := filepath.Join(deployDir(t), "boxlite", h.file)
			c, err := config.Load(path)
			if err != nil {
				t.Fatalf("config.Load(%s): %v", path, err)
			}
			if c.Kernel.Default != h.kernel {
				t.Errorf("%s: kernel.default = %q, want %q", path, c.Kernel.Default, h.kernel)
			}
			want := config.Default()
			want.Kernel.Default = h.kernel
			want.Path, want.Source = c.Path, c.Source
			if !reflect.DeepEqual(c, want) {
				t.Errorf("%s differs from the built-in defaults in more than kernel.default:\n got %+v\nwant %+v", path, c, want)
			}
			if filepath.Join("/etc/boxlite", h.file) != h.configPath {
				t.Errorf("installed as /etc/boxlite/%s but the drop-in names %s", h.file, h.configPath)
			}
		})
	}
}

// criRuntimes decodes the drop-in's CRI runtime handlers.
func criRuntimes(t testing.TB, data string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := toml.Unmarshal([]byte(data), &doc); err != nil {
		t.Fatalf("drop-in is not valid TOML: %v", err)
	}
	if doc["version"] != int64(3) {
		t.Errorf("drop-in version = %v, want 3", doc["version"])
	}
	rt, err := path(doc, "plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes")
	if err != nil {
		t.Fatalf("drop-in: plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes: %v", err)
	}
	return rt.(map[string]any)
}

// TestDropInFile checks the drop-in's content statically; the test with the
// real containerd is TestDropInRealContainerd.
func TestDropInFile(t *testing.T) {
	rts := criRuntimes(t, readFile(t, filepath.Join(deployDir(t), "containerd", "boxlite.toml")))
	if len(rts) != len(handlers) {
		t.Errorf("drop-in has %d handlers, want %d", len(rts), len(handlers))
	}
	for _, h := range handlers {
		r, ok := rts[h.name].(map[string]any)
		if !ok {
			t.Errorf("handler %q missing", h.name)
			continue
		}
		want := map[string]any{
			"runtime_type":                    "io.containerd.boxlite.v2",
			"pod_annotations":                 []any{"io.boxlite.*"},
			"container_annotations":           []any{"io.boxlite.*"},
			"privileged_without_host_devices": true,
			"options":                         map[string]any{"ConfigPath": h.configPath},
		}
		if !reflect.DeepEqual(r, want) {
			t.Errorf("handler %q = %v, want %v", h.name, r, want)
		}
	}
}

func yamlDocs(t testing.TB, file string) []map[string]any {
	t.Helper()
	docs, err := parseYAMLDocs(readFile(t, filepath.Join(deployDir(t), "kubernetes", file)))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return docs
}

func get(t testing.TB, doc any, keys ...any) any {
	t.Helper()
	v, err := path(doc, keys...)
	if err != nil {
		t.Fatalf("%v: %v", keys, err)
	}
	return v
}

func TestRuntimeClasses(t *testing.T) {
	docs := yamlDocs(t, "runtimeclasses.yaml")
	if len(docs) != len(handlers) {
		t.Fatalf("runtimeclasses.yaml has %d documents, want %d", len(docs), len(handlers))
	}
	dropIn := criRuntimes(t, readFile(t, filepath.Join(deployDir(t), "containerd", "boxlite.toml")))
	wantMem := config.Default().VM.OverheadMemoryMiB
	for i, h := range handlers {
		d := docs[i]
		t.Run(h.name, func(t *testing.T) {
			for _, c := range []struct {
				keys []any
				want any
			}{
				{[]any{"apiVersion"}, "node.k8s.io/v1"},
				{[]any{"kind"}, "RuntimeClass"},
				{[]any{"metadata", "name"}, h.name},
				{[]any{"handler"}, h.name},
				{[]any{"scheduling", "nodeSelector"}, map[string]any{"boxlite.io/runtime": "true"}},
			} {
				if got := get(t, d, c.keys...); !reflect.DeepEqual(got, c.want) {
					t.Errorf("%v = %#v, want %#v", c.keys, got, c.want)
				}
			}
			if _, ok := dropIn[get(t, d, "handler").(string)]; !ok {
				t.Errorf("handler %v is not a handler of the containerd drop-in", get(t, d, "handler"))
			}
			mem, ok := get(t, d, "overhead", "podFixed", "memory").(string)
			var mi int
			if !ok || !strings.HasSuffix(mem, "Mi") || func() bool { _, err := fmt.Sscan(strings.TrimSuffix(mem, "Mi"), &mi); return err != nil }() {
				t.Fatalf("overhead.podFixed.memory = %v, want a quantity in Mi", mem)
			}
			// The VM's guest headroom (vm.overhead_memory_mib) plus a
			// positive allowance for the shim and VMM processes.
			if mi <= wantMem {
				t.Errorf("overhead.podFixed.memory %dMi does not exceed vm.overhead_memory_mib %d", mi, wantMem)
			}
			if cpu, ok := get(t, d, "overhead", "podFixed", "cpu").(string); !ok || !strings.HasSuffix(cpu, "m") {
				t.Errorf("overhead.podFixed.cpu = %v, want millicores", cpu)
			}
		})
	}
}

// TestInstallerDaemonSet checks what can be checked without a cluster: the
// DaemonSet runs install.sh from the image against the host root mounted at
// /host, uninstalls in preStop, and labels nodes with the RuntimeClasses'
// nodeSelector.
func TestInstallerDaemonSet(t *testing.T) {
	docs := yamlDocs(t, "boxlite-deploy.yaml")
	var ds map[string]any
	for _, d := range docs {
		if d["kind"] == "DaemonSet" {
			ds = d
		}
	}
	if ds == nil {
		t.Fatal("boxlite-deploy.yaml has no DaemonSet")
	}
	pod := get(t, ds, "spec", "template", "spec")
	if get(t, pod, "hostPID") != true {
		t.Error("hostPID must be true (install.sh --restart enters PID 1's mount namespace)")
	}
	ctr := get(t, pod, "containers", 0)
	if get(t, ctr, "securityContext", "privileged") != true {
		t.Error("the installer container must be privileged")
	}
	// A privileged, hostPID container runs whatever image the tag points at:
	// the tag is pinned (never latest, never absent), or a digest. It was
	// :latest before (this test failed there).
	if img, _ := get(t, ctr, "image").(string); !pinnedImage(img) {
		t.Errorf("the installer's image %q is not pinned (a version tag or @sha256 digest, not latest)", img)
	}
	var hostVol string
	for _, v := range get(t, pod, "volumes").([]any) {
		if p, err := path(v, "hostPath", "path"); err == nil && p == "/" {
			hostVol = get(t, v, "name").(string)
		}
	}
	if hostVol == "" {
		t.Fatal("no hostPath volume of /")
	}
	mounted := false
	for _, m := range get(t, ctr, "volumeMounts").([]any) {
		if get(t, m, "name") == hostVol && get(t, m, "mountPath") == "/host" {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("hostPath / (volume %q) is not mounted at /host", hostVol)
	}
	script := strings.Join(toStrings(get(t, ctr, "args")), "\n")
	const installer = "/opt/boxlite/deploy/install/install.sh"
	for _, want := range []string{
		installer + " install --root /host --bin /opt/boxlite/bin --restart",
		`kubectl label node "$NODE_NAME" boxlite.io/runtime=true`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("container script lacks %q:\n%s", want, script)
		}
	}
	preStop := strings.Join(toStrings(get(t, ctr, "lifecycle", "preStop", "exec", "command")), "\n")
	if !strings.Contains(preStop, installer+" uninstall --root /host --restart") {
		t.Errorf("preStop does not uninstall:\n%s", preStop)
	}
	if got := get(t, ctr, "env", 0, "valueFrom", "fieldRef", "fieldPath"); got != "spec.nodeName" {
		t.Errorf("NODE_NAME comes from %v, want the downward API's spec.nodeName", got)
	}
	// The image is built from an unpacked release (the layout install.sh
	// expects: bin/, deploy/{install,containerd,boxlite}/, SHA256SUMS) put
	// whole at /opt/boxlite, where the DaemonSet runs the script with
	// --bin /opt/boxlite/bin; the build checks the release's SHA256SUMS.
	// test/release builds and unpacks a release and checks its layout.
	var steps []string
	for _, l := range strings.Split(readFile(t, filepath.Join(deployDir(t), "kubernetes", "Dockerfile")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			steps = append(steps, l)
		}
	}
	for _, want := range []string{
		"COPY . /opt/boxlite/",
		"RUN " + installer + " verify",
		`ENTRYPOINT ["` + installer + `"]`,
	} {
		found := false
		for _, s := range steps {
			found = found || s == want
		}
		if !found {
			t.Errorf("Dockerfile lacks the step %q:\n%s", want, strings.Join(steps, "\n"))
		}
	}
	// The nodeSelector label the RuntimeClasses use is the one set here.
	for _, d := range yamlDocs(t, "runtimeclasses.yaml") {
		for k, v := range get(t, d, "scheduling", "nodeSelector").(map[string]any) {
			if !strings.Contains(script, k+"="+v.(string)) {
				t.Errorf("RuntimeClass %v selects %s=%v, which the DaemonSet does not set", get(t, d, "metadata", "name"), k, v)
			}
		}
	}
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func TestYAMLSubsetReader(t *testing.T) {
	docs, err := parseYAMLDocs(`# c
a: 1
b: "x # not a comment" # comment
c:
  - d: [e, "f"]
    g: |
      line1
        line2
  - h
  - |
    s
i:
- j
---
k: v
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"a": 1, "b": "x # not a comment", "c": []any{map[string]any{"d": []any{"e", "f"}, "g": "line1\n  line2\n"}, "h", "s\n"}, "i": []any{"j"}},
		{"k": "v"},
	}
	if !reflect.DeepEqual(docs, want) {
		t.Errorf("got %#v\nwant %#v", docs, want)
	}
	for _, bad := range []string{"a: {b: c}\n", "a: 1\na: 2\n", "a: 1\n   b: 2\n", "x\n"} {
		if _, err := parseYAMLDocs(bad); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

// pinnedImage reports whether an image reference names a digest, or a tag
// other than latest.
func pinnedImage(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	name := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	return ok && tag != "" && tag != "latest"
}
