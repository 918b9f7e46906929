package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/boxlite/boxlite-shim/kernel"
	"github.com/containerd/errdefs"
	toml "github.com/pelletier/go-toml/v2"
)

// withDefaultPath points defaultPath at p for the test.
func withDefaultPath(t *testing.T, p string) {
	t.Helper()
	old := defaultPath
	defaultPath = p
	t.Cleanup(func() { defaultPath = old })
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sameSettings compares two configurations, ignoring where they came from.
func sameSettings(a, b *Config) bool {
	x, y := *a, *b
	x.Path, x.Source, y.Path, y.Source = "", "", "", ""
	return reflect.DeepEqual(x, y)
}

func wantContains(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error containing %q, got nil", wants)
	}
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("error %q does not match errdefs.ErrInvalidArgument", err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%s", w, err)
		}
	}
}

func TestLoadDefaultPathAbsentGivesDefaults(t *testing.T) {
	withDefaultPath(t, filepath.Join(t.TempDir(), "absent.toml"))
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("got %+v, want defaults %+v", c, Default())
	}
	if c.Path != "" || c.Source != SourceDefaults {
		t.Errorf("Path = %q, Source = %q; want \"\" and %q", c.Path, c.Source, SourceDefaults)
	}
}

func TestLoadDefaultPathPresent(t *testing.T) {
	p := writeFile(t, "config.toml", "[kernel]\ndefault = \"net\"\n")
	withDefaultPath(t, p)
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Kernel.Default != kernel.Net || c.Path != p || c.Source != p {
		t.Errorf("got default %q, Path %q, Source %q", c.Kernel.Default, c.Path, c.Source)
	}
	// Keys the file does not set keep their defaults.
	if !slices.Equal(c.Kernel.Allowed, Default().Kernel.Allowed) || c.VM != Default().VM {
		t.Errorf("unset keys lost their defaults: %+v", c)
	}
}

func TestLoadDefaultPathInvalidIsAnError(t *testing.T) {
	p := writeFile(t, "config.toml", "[vm]\ncpus = 0\n")
	withDefaultPath(t, p)
	_, err := Load("")
	wantContains(t, err, p, "vm.cpus = 0")
}

func TestLoadExplicitMissingIsAnError(t *testing.T) {
	withDefaultPath(t, filepath.Join(t.TempDir(), "absent.toml"))
	missing := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(missing)
	wantContains(t, err, missing, "does not exist", "named explicitly")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %q does not match fs.ErrNotExist", err)
	}
}

func TestLoadNotAFile(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir)
	wantContains(t, err, dir, "not a regular file")
}

func TestLoadTooLarge(t *testing.T) {
	p := writeFile(t, "big.toml", "# "+strings.Repeat("x", MaxFileSize)+"\n")
	_, err := Load(p)
	wantContains(t, err, p, "larger than")
}

func TestExampleParsesToDefaults(t *testing.T) {
	c, err := Parse([]byte(Example), "example")
	if err != nil {
		t.Fatal(err)
	}
	if !sameSettings(c, Default()) {
		t.Errorf("Example gives %+v,\nDefault() is %+v", c, Default())
	}
}

// schemaKeys lists every key of the schema, dotted; tables that are maps
// (kernel.paths) count as one key.
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		if t.Field(i).Type.Kind() == reflect.Struct {
			keys = append(keys, schemaKeys(t.Field(i).Type, prefix+tag+".")...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	sort.Strings(keys)
	return keys
}

func docKeys(m map[string]any, prefix string) []string {
	var keys []string
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			keys = append(keys, docKeys(sub, prefix+k+".")...)
			continue
		}
		keys = append(keys, prefix+k)
	}
	sort.Strings(keys)
	return keys
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	var m map[string]any
	if err := toml.Unmarshal([]byte(Example), &m); err != nil {
		t.Fatal(err)
	}
	got, want := docKeys(m, ""), schemaKeys(reflect.TypeFor[Config](), "")
	if !slices.Equal(got, want) {
		t.Errorf("Example sets keys %q,\nthe schema has %q", got, want)
	}
	for _, key := range want {
		if _, ok := acceptedValues[key]; !ok {
			t.Errorf("acceptedValues has no entry for %q", key)
		}
	}
	for _, a := range append(KnownAnnotations(), AnnotationWildcard) {
		if !strings.Contains(Example, `"`+a+`"`) {
			t.Errorf("Example does not mention annotation %q", a)
		}
	}
	for _, n := range kernel.Names() {
		if !strings.Contains(Example, `"`+string(n)+`"`) {
			t.Errorf("Example does not mention kernel variant %q", n)
		}
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name  string
		doc   string
		check func(*Config) bool
	}{
		{"empty file", "", func(c *Config) bool { return sameSettings(c, Default()) }},
		{"comments only", "# nothing\n\n", func(c *Config) bool { return sameSettings(c, Default()) }},
		{"net default", "[kernel]\ndefault = \"net\"\n", func(c *Config) bool { return c.Kernel.Default == kernel.Net }},
		{"net only", "[kernel]\ndefault = \"net\"\nallowed = [\"net\"]\n", func(c *Config) bool {
			return slices.Equal(c.Kernel.Allowed, []kernel.Name{kernel.Net})
		}},
		{"lean only", "[kernel]\nallowed = [\"lean\"]\n", func(c *Config) bool {
			return slices.Equal(c.Kernel.Allowed, []kernel.Name{kernel.Lean}) && c.Kernel.Default == kernel.Lean
		}},
		{"kernel paths", "[kernel.paths]\nlean = \"/k/lean.so\"\nnet = \"/k/net.so\"\n", func(c *Config) bool {
			return c.Kernel.Paths[kernel.Lean] == "/k/lean.so" && c.Kernel.Paths[kernel.Net] == "/k/net.so"
		}},
		{"libkrun path", "libkrun_path = \"/opt/krun/libkrun.so.1\"\n", func(c *Config) bool { return c.LibkrunPath == "/opt/krun/libkrun.so.1" }},
		{"dirs", "state_dir = \"/tmp/s\"\ncache_dir = \"/tmp/c\"\n", func(c *Config) bool { return c.StateDir == "/tmp/s" && c.CacheDir == "/tmp/c" }},
		{"wildcard", "[annotations]\nenabled = [\"io.boxlite.*\"]\n", func(c *Config) bool {
			return slices.Equal(c.EnabledAnnotations(), KnownAnnotations())
		}},
		{"nothing enabled", "[annotations]\nenabled = []\n", func(c *Config) bool { return len(c.EnabledAnnotations()) == 0 }},
		{"vm bounds", "[vm]\ncpus = 254\nmax_cpus = 254\nmemory_mib = 128\nmax_memory_mib = 128\noverhead_memory_mib = 0\nroot_size_mib = 32\nconsole_log_max_kib = 4\nready_timeout_s = 3600\n", func(c *Config) bool {
			return c.VM == VMConfig{CPUs: 254, MaxCPUs: 254, MemoryMiB: 128, MaxMemoryMiB: 128, RootSizeMiB: 32, ConsoleLogMaxKiB: 4, ReadyTimeoutS: 3600}
		}},
		{"ready timeout", "[vm]\nready_timeout_s = 1\n", func(c *Config) bool { return c.VM.ReadyTimeoutS == 1 }},
		{"vm top", "[vm]\nmemory_mib = 4194304\nmax_memory_mib = 4194304\noverhead_memory_mib = 4096\n", func(c *Config) bool {
			return c.VM.MemoryMiB == MaxMemoryMiB && c.VM.OverheadMemoryMiB == MaxOverheadMemoryMiB
		}},
		{"dotted keys", "vm.cpus = 2\nkernel.default = \"net\"\n", func(c *Config) bool { return c.VM.CPUs == 2 && c.Kernel.Default == kernel.Net }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), "test.toml")
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
			if c.Source != "test.toml" || c.Path != "" {
				t.Errorf("Source %q, Path %q", c.Source, c.Path)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	const known = "io.boxlite.cpus, io.boxlite.kernel, io.boxlite.memory_mib"
	for _, tc := range []struct {
		name  string
		doc   string
		wants []string // each must be in the message: key, value, what is accepted
	}{
		// values out of the accepted set
		{"libkrun relative", `libkrun_path = "libkrun.so.1"`, []string{`libkrun_path = "libkrun.so.1"`, `"" (search the dynamic loader path`, "or an absolute path"}},
		{"state_dir relative", `state_dir = "run/boxlite"`, []string{`state_dir = "run/boxlite"`, `an absolute directory path other than "/"`}},
		{"state_dir empty", `state_dir = ""`, []string{`state_dir = ""`, "an absolute directory path"}},
		{"state_dir root", `state_dir = "/"`, []string{`state_dir = "/"`, `other than "/"`}},
		{"state_dir root unclean", `state_dir = "//."`, []string{`state_dir = "//."`, `other than "/"`}},
		{"state_dir NUL", `state_dir = "/run/a\u0000b"`, []string{`state_dir = "/run/a\x00b"`, "absolute directory path"}},
		{"cache_dir relative", `cache_dir = "cache"`, []string{`cache_dir = "cache"`, "absolute directory path"}},
		{"kernel default unknown", "[kernel]\ndefault = \"fat\"", []string{`kernel.default = "fat"`, "not a known kernel variant", "known kernel variant (lean, net) listed in kernel.allowed"}},
		{"kernel default empty", "[kernel]\ndefault = \"\"", []string{`kernel.default = ""`, "(lean, net)"}},
		{"kernel default case", "[kernel]\ndefault = \"Lean\"", []string{`kernel.default = "Lean"`, "(lean, net)"}},
		{"kernel default not allowed", "[kernel]\ndefault = \"net\"\nallowed = [\"lean\"]", []string{`kernel.default = "net"`, `not listed in kernel.allowed = ["lean"]`, "add it to kernel.allowed"}},
		{"kernel allowed empty", "[kernel]\nallowed = []", []string{"kernel.allowed = []", "non-empty list of distinct known kernel variants (lean, net)"}},
		{"kernel allowed unknown", "[kernel]\nallowed = [\"lean\", \"fat\"]", []string{`kernel.allowed = ["lean", "fat"]`, `"fat" is not a known kernel variant`, "(lean, net)"}},
		{"kernel allowed duplicate", "[kernel]\nallowed = [\"lean\", \"net\", \"lean\"]", []string{`kernel.allowed = ["lean", "net", "lean"]`, `"lean" is listed twice`, "distinct"}},
		{"kernel paths unknown variant", "[kernel.paths]\nfat = \"/k/fat.so\"", []string{`kernel.paths.fat = "/k/fat.so"`, `"fat" is not a known kernel variant`, "must be known kernel variants (lean, net)"}},
		{"kernel paths odd variant", "[kernel.paths]\n\"a b\" = \"/k\"", []string{`kernel.paths."a b" = "/k"`, "(lean, net)"}},
		{"kernel paths relative", "[kernel.paths]\nlean = \"lean.so\"", []string{`kernel.paths.lean = "lean.so"`, "an absolute path to a libkrunfw-ABI file"}},
		{"kernel paths empty", "[kernel.paths]\nnet = \"\"", []string{`kernel.paths.net = ""`, "an absolute path"}},
		{"annotation unknown", "[annotations]\nenabled = [\"io.boxlite.foo\"]", []string{`annotations.enabled = ["io.boxlite.foo"]`, `"io.boxlite.foo" is not a known annotation`, known, `"io.boxlite.*" for all`}},
		{"annotation other prefix", "[annotations]\nenabled = [\"*\"]", []string{`annotations.enabled = ["*"]`, `"*" is not a known annotation`, known}},
		{"annotation duplicate", "[annotations]\nenabled = [\"io.boxlite.kernel\", \"io.boxlite.kernel\"]", []string{`"io.boxlite.kernel" is listed twice`, "distinct known annotations"}},
		{"cpus zero", "[vm]\ncpus = 0", []string{"vm.cpus = 0", "an integer from 1 to vm.max_cpus (8)"}},
		{"cpus negative", "[vm]\ncpus = -1", []string{"vm.cpus = -1", "from 1 to vm.max_cpus (8)"}},
		{"cpus over max", "[vm]\ncpus = 9", []string{"vm.cpus = 9", "from 1 to vm.max_cpus (8)"}},
		{"cpus over raised max", "[vm]\ncpus = 17\nmax_cpus = 16", []string{"vm.cpus = 17", "from 1 to vm.max_cpus (16)"}},
		{"memory under", "[vm]\nmemory_mib = 127", []string{"vm.memory_mib = 127", "from 128 to vm.max_memory_mib (8192)"}},
		{"memory over", "[vm]\nmemory_mib = 8193", []string{"vm.memory_mib = 8193", "from 128 to vm.max_memory_mib (8192)"}},
		{"max_cpus zero", "[vm]\nmax_cpus = 0", []string{"vm.max_cpus = 0", "an integer from 1 to 254"}},
		{"max_cpus over libkrun", "[vm]\nmax_cpus = 256", []string{"vm.max_cpus = 256", "from 1 to 254"}},
		// 255 fits krun_set_vm_config's uint8 but not libkrun's MP table
		// (krun_start_enter fails): accepted before, seen failing then.
		{"max_cpus over the MP table", "[vm]\nmax_cpus = 255", []string{"vm.max_cpus = 255", "from 1 to 254 (libkrun's x86_64 MP table holds at most 254 vCPUs)"}},
		{"max_memory under", "[vm]\nmax_memory_mib = 64\nmemory_mib = 128", []string{"vm.max_memory_mib = 64", "from 128 to 4194304"}},
		{"max_memory over", "[vm]\nmax_memory_mib = 4194305", []string{"vm.max_memory_mib = 4194305", "from 128 to 4194304"}},
		{"overhead negative", "[vm]\noverhead_memory_mib = -1", []string{"vm.overhead_memory_mib = -1", "from 0 to 4096"}},
		{"overhead over", "[vm]\noverhead_memory_mib = 4097", []string{"vm.overhead_memory_mib = 4097", "from 0 to 4096"}},
		{"root size under", "[vm]\nroot_size_mib = 31", []string{"vm.root_size_mib = 31", "from 32 to 1048576"}},
		{"root size over", "[vm]\nroot_size_mib = 1048577", []string{"vm.root_size_mib = 1048577", "from 32 to 1048576"}},
		{"console cap under", "[vm]\nconsole_log_max_kib = 3", []string{"vm.console_log_max_kib = 3", "from 4 to 1048576"}},
		{"console cap over", "[vm]\nconsole_log_max_kib = 1048577", []string{"vm.console_log_max_kib = 1048577", "from 4 to 1048576"}},
		{"ready timeout negative", "[vm]\nready_timeout_s = -1", []string{"vm.ready_timeout_s = -1", "from 0 (automatic) to 3600"}},
		{"ready timeout over", "[vm]\nready_timeout_s = 3601", []string{"vm.ready_timeout_s = 3601", "from 0 (automatic) to 3600"}},

		// values of the wrong type
		{"cpus string", "[vm]\ncpus = \"2\"", []string{`vm.cpus = "2" (line 2)`, "wrong type: TOML string", "an integer from 1 to vm.max_cpus"}},
		{"cpus float", "[vm]\ncpus = 1.5", []string{"vm.cpus = 1.5 (line 2)", "wrong type: TOML float", "an integer from 1 to vm.max_cpus"}},
		{"cpus too big for int64", "[vm]\ncpus = 99999999999999999999", []string{"vm.cpus = 99999999999999999999", "too large", "an integer from 1 to vm.max_cpus"}},
		{"memory bool", "[vm]\nmemory_mib = true", []string{"vm.memory_mib = true", "wrong type: TOML boolean", "from 128 to vm.max_memory_mib"}},
		{"state_dir integer", "state_dir = 3", []string{"state_dir = 3 (line 1)", "wrong type: TOML integer", "absolute directory path"}},
		{"libkrun array", `libkrun_path = ["/a"]`, []string{"libkrun_path", "wrong type", "absolute path to libkrun.so.1"}},
		{"kernel not a table", "kernel = 3", []string{"kernel = 3", "a table: [kernel]"}},
		{"allowed not a list", "[kernel]\nallowed = \"lean\"", []string{`kernel.allowed = "lean"`, "wrong type", "non-empty list"}},
		{"allowed element integer", "[kernel]\nallowed = [\"lean\", 3]", []string{"kernel.allowed = 3", "wrong type: TOML integer", "non-empty list"}},
		{"paths value integer", "[kernel.paths]\nlean = 3", []string{"kernel.paths.lean = 3", "wrong type", "an absolute path to a libkrunfw-ABI file"}},
		{"enabled string", "[annotations]\nenabled = \"io.boxlite.kernel\"", []string{`annotations.enabled = "io.boxlite.kernel"`, "wrong type", "list of distinct known annotations"}},
		{"vm array of tables", "[[vm]]\ncpus = 1", []string{`line 1, column 3: cannot store an array table in a struct (at key "vm")`, "accepted: a table: [vm]"}},

		// TOML syntax
		{"syntax", "cpus = \n", []string{"TOML syntax error at line 1"}},
		{"duplicate key", "[vm]\ncpus = 1\ncpus = 2\n", []string{"line 3, column 1: key cpus is already defined"}},
		{"duplicate table", "[vm]\n[vm]\n", []string{"line 2"}},

		// unknown keys
		{"unknown top-level key", "frobnicate = 1", []string{`unknown key "frobnicate" (line 1)`, "top-level keys accepted: annotations, cache_dir, kernel, libkrun_path, state_dir, vm"}},
		{"unknown nested key typo", "[kernel]\ndefualt = \"net\"", []string{`unknown key "kernel.defualt" (line 2)`, "keys accepted in [kernel]: allowed, default, paths"}},
		{"unknown vm key", "[vm]\ncpu = 2", []string{`unknown key "vm.cpu" (line 2)`, "keys accepted in [vm]: console_log_max_kib, cpus, max_cpus, max_memory_mib, memory_mib, overhead_memory_mib, ready_timeout_s, root_size_mib"}},
		{"unknown table", "[kernal]\ndefault = \"net\"", []string{`unknown table "kernal" (line 1)`, "top-level keys accepted"}},
		{"unknown sub-table", "[vm.limits]\nx = 1", []string{`unknown table "vm.limits" (line 1)`, "keys accepted in [vm]"}},
		{"unknown dotted key", "vm.cpux = 2", []string{`unknown key "vm.cpux" (line 1)`, "keys accepted in [vm]"}},
		{"unknown deep dotted key", "a.b.c = 2", []string{`unknown key "a.b.c" (line 1)`, "top-level keys accepted"}},
		{"unknown quoted key", "\"state dir\" = \"/x\"", []string{`unknown key "\"state dir\""`, "top-level keys accepted"}},
		{"runtime option keys outside a body", "ConfigPath = \"/x\"", []string{`unknown key "ConfigPath"`}},
		{"every unknown key named", "frob = 1\n[vm]\ncpu = 2\n[kernel]\ndefualt = \"net\"\n", []string{"3 problems", `"frob" (line 1)`, `"vm.cpu" (line 3)`, `"kernel.defualt" (line 5)`}},

		// several problems at once
		{"all problems reported", "state_dir = \"x\"\n[vm]\ncpus = 0\nmemory_mib = 1\n", []string{"3 problems", `state_dir = "x"`, "vm.cpus = 0", "vm.memory_mib = 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.doc), "/etc/test.toml")
			if err == nil {
				t.Fatalf("parsed to %+v, want an error", c)
			}
			wantContains(t, err, append([]string{"boxlite config /etc/test.toml: "}, tc.wants...)...)
			var ce *Error
			if !errors.As(err, &ce) || ce.Source != "/etc/test.toml" || len(ce.Problems) == 0 {
				t.Errorf("error is not a *Error naming the source: %#v", err)
			}
			if strings.Contains(err.Error(), "config.VMConfig") || strings.Contains(err.Error(), "struct field") {
				t.Errorf("message leaks Go types: %s", err)
			}
		})
	}
}

func TestLongValuesAreCutInMessages(t *testing.T) {
	long := strings.Repeat("x", 5000)
	_, err := Parse([]byte(`state_dir = "`+long+`"`), "t")
	wantContains(t, err, "state_dir", "(5000 bytes)")
	if len(err.Error()) > 500 {
		t.Errorf("message is %d bytes long", len(err.Error()))
	}
}

func TestValidateZeroConfig(t *testing.T) {
	err := (&Config{}).Validate()
	wantContains(t, err, SourceDefaults, `state_dir = ""`, `cache_dir = ""`, "kernel.allowed = []", `kernel.default = ""`,
		"vm.max_cpus = 0", "vm.max_memory_mib = 0", "vm.cpus = 0", "vm.memory_mib = 0")
	if err := Default().Validate(); err != nil {
		t.Errorf("Default() does not validate: %v", err)
	}
}

func TestKernelPolicy(t *testing.T) {
	c := Default()
	c.Kernel.Paths[kernel.Net] = "/k/net.so"
	p := c.KernelPolicy()
	if p.Default != kernel.Lean || !slices.Equal(p.Allowed, []kernel.Name{kernel.Lean, kernel.Net}) || p.Paths[kernel.Net] != "/k/net.so" {
		t.Fatalf("policy %+v", p)
	}
	p.Allowed[0] = "x"
	p.Paths[kernel.Net] = "/other"
	if c.Kernel.Allowed[0] != kernel.Lean || c.Kernel.Paths[kernel.Net] != "/k/net.so" {
		t.Errorf("KernelPolicy shares storage with the Config")
	}
	if p := Default().KernelPolicy(); p.Paths != nil {
		t.Errorf("no paths configured, policy has %v", p.Paths)
	}
}

func TestDefaultIsFresh(t *testing.T) {
	a := Default()
	a.Kernel.Allowed[0] = "x"
	a.Kernel.Paths["lean"] = "/x"
	a.Annotations.Enabled[0] = "x"
	if b := Default(); b.Kernel.Allowed[0] != kernel.Lean || len(b.Kernel.Paths) != 0 || b.Annotations.Enabled[0] != AnnotationKernel {
		t.Errorf("Default() shares storage between calls")
	}
}

func TestLoadFIFOIsRefusedWithoutBlocking(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo.toml")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := Load(p)
	wantContains(t, err, p, "not a regular file")
}
