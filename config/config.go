package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/boxlite/boxlite-shim/kernel"
	toml "github.com/pelletier/go-toml/v2"
)

// DefaultPath is where the configuration lives when runtime options name no
// other file. It may be absent: the built-in defaults then apply.
const DefaultPath = "/etc/boxlite/config.toml"

// defaultPath is DefaultPath; tests point it elsewhere.
var defaultPath = DefaultPath

// Names for configurations that do not come from a file (Config.Source).
const (
	// SourceDefaults is the Source of Default(): no file was read.
	SourceDefaults = "(built-in defaults)"
	// SourceOptionsBody is the Source of a configuration given inline in
	// containerd's runtime options (runtimeoptions.v1.Options.ConfigBody).
	SourceOptionsBody = "(runtime options config_body)"
)

// Limits on values. libkrun takes the vCPU count as a uint8, but its x86_64
// MP table holds at most 254 CPUs (mptable.rs MAX_SUPPORTED_CPUS: with 255
// krun_start_enter fails); memory is a uint32 count of MiB, and the memory
// ceiling is a sanity bound well inside that. Each guest kernel also has
// its own CONFIG_NR_CPUS (libkrunfw's: 16): that bound is checked where the
// kernel is known (kernel.CheckCPUs, at the VMM's start).
const (
	MaxVCPUs             = 254
	MinMemoryMiB         = 128
	MaxMemoryMiB         = 4 << 20 // 4 TiB
	MaxOverheadMemoryMiB = 4096
	// Bounds of vm.root_size_mib (the sandbox directory's tmpfs, which
	// holds the guest root and the agent) and vm.console_log_max_kib.
	MinRootSizeMiB      = 32
	MaxRootSizeMiB      = 1 << 20
	MinConsoleLogMaxKiB = 4
	MaxConsoleLogMaxKiB = 1 << 20
	// MaxReadyTimeoutS bounds vm.ready_timeout_s (0 = automatic).
	MaxReadyTimeoutS = 3600
	// MaxFileSize bounds the size of a configuration file or body.
	MaxFileSize = 1 << 20
)

// Config is the shim's configuration. Field tags are the TOML keys.
type Config struct {
	// LibkrunPath is the libkrun.so.1 to dlopen; "" searches the dynamic
	// loader path for "libkrun.so.1".
	LibkrunPath string `toml:"libkrun_path"`
	// StateDir holds per-sandbox state (sockets, logs, staged kernels).
	StateDir string `toml:"state_dir"`
	// CacheDir holds extracted kernels.
	CacheDir    string            `toml:"cache_dir"`
	Kernel      KernelConfig      `toml:"kernel"`
	Annotations AnnotationsConfig `toml:"annotations"`
	VM          VMConfig          `toml:"vm"`

	// Path is the file this configuration was loaded from; "" when no file
	// was read (defaults, or an inline body).
	Path string `toml:"-"`
	// Source names where the configuration came from, for messages: Path,
	// SourceDefaults, SourceOptionsBody, or the name given to Parse.
	Source string `toml:"-"`
}

// KernelConfig is the [kernel] table.
type KernelConfig struct {
	// Default is the variant a sandbox gets when it does not ask for one.
	Default kernel.Name `toml:"default"`
	// Allowed lists the variants sandboxes may ask for.
	Allowed []kernel.Name `toml:"allowed"`
	// Paths gives, per variant, a libkrunfw-ABI file to use instead of an
	// embedded blob (builds that embed none).
	Paths map[kernel.Name]string `toml:"paths"`
}

// AnnotationsConfig is the [annotations] table.
type AnnotationsConfig struct {
	// Enabled lists the io.boxlite.* annotations the shim honours;
	// AnnotationWildcard stands for all known ones.
	Enabled []string `toml:"enabled"`
}

// VMConfig is the [vm] table. Memory is in MiB.
type VMConfig struct {
	CPUs              int `toml:"cpus"`
	MemoryMiB         int `toml:"memory_mib"`
	MaxCPUs           int `toml:"max_cpus"`
	MaxMemoryMiB      int `toml:"max_memory_mib"`
	OverheadMemoryMiB int `toml:"overhead_memory_mib"`
	// RootSizeMiB is the size of the tmpfs that holds a sandbox's
	// directory: the guest-writable guest root and the VMM's state.
	RootSizeMiB int `toml:"root_size_mib"`
	// ConsoleLogMaxKiB bounds the kept guest console (console.log; the part
	// before it in console.log.1).
	ConsoleLogMaxKiB int `toml:"console_log_max_kib"`
	// ReadyTimeoutS bounds, in seconds, the wait from the VMM's start until
	// the guest's agent says it serves; 0 = automatic (the VMM's default,
	// longer under the emulated engine: see runtime/sandbox).
	ReadyTimeoutS int `toml:"ready_timeout_s"`
}

// Default returns the built-in configuration, a fresh copy each call.
func Default() *Config {
	return &Config{
		LibkrunPath: "",
		StateDir:    "/run/boxlite",
		CacheDir:    "/var/lib/boxlite/cache",
		Kernel: KernelConfig{
			Default: kernel.Lean,
			Allowed: []kernel.Name{kernel.Lean, kernel.Net},
			Paths:   map[kernel.Name]string{},
		},
		Annotations: AnnotationsConfig{Enabled: []string{AnnotationKernel}},
		VM: VMConfig{
			CPUs:              1,
			MemoryMiB:         512,
			MaxCPUs:           8,
			MaxMemoryMiB:      8192,
			OverheadMemoryMiB: 64,
			RootSizeMiB:       256,
			ConsoleLogMaxKiB:  1024,
		},
		Source: SourceDefaults,
	}
}

// Example is a complete, documented configuration file holding the defaults.
// Parsing it gives Default().
const Example = `# containerd-shim-boxlite-v2 configuration (TOML).
#
# Read from /etc/boxlite/config.toml, or from the file named by the runtime
# handler's options in containerd's configuration:
#   [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.boxlite-net.options]
#     ConfigPath = "/etc/boxlite/config-net.toml"
# If /etc/boxlite/config.toml is absent, the values shown here apply; a file
# named explicitly must exist. Unknown keys and invalid values are errors.

# Path of libkrun.so.1 to dlopen; "" = search the dynamic loader path for
# "libkrun.so.1". Otherwise an absolute path.
libkrun_path = ""
# Per-sandbox state: sockets, VMM logs, staged kernels. Absolute path.
state_dir = "/run/boxlite"
# Cache of extracted kernels (content-addressed, verified). Absolute path.
cache_dir = "/var/lib/boxlite/cache"

[kernel]
# Variant a sandbox gets when its io.boxlite.kernel annotation is absent.
# Must be listed in allowed.
default = "lean"
# Variants sandboxes may ask for: a non-empty list of known variants
# ("lean", "net"), no duplicates.
allowed = ["lean", "net"]

# Optional per-variant libkrunfw-ABI file (libkrunfw.so.5), used instead of
# an embedded kernel: for builds that embed none. Keys are known variants,
# values absolute paths.
[kernel.paths]
# lean = "/usr/lib/boxlite/kernels/lean/libkrunfw.so.5"
# net  = "/usr/lib/boxlite/kernels/net/libkrunfw.so.5"

[annotations]
# io.boxlite.* annotations the shim honours, after containerd's own
# pod_annotations list. Known: "io.boxlite.kernel", "io.boxlite.cpus",
# "io.boxlite.memory_mib"; "io.boxlite.*" enables all of them. A sandbox
# carrying an io.boxlite.* annotation that is not enabled is refused.
enabled = ["io.boxlite.kernel"]

[vm]
# vCPUs of a sandbox VM: 1..max_cpus (annotation io.boxlite.cpus).
cpus = 1
# Memory of a sandbox VM in MiB: 128..max_memory_mib
# (annotation io.boxlite.memory_mib).
memory_mib = 512
# Ceiling for cpus and for the annotation: 1..254 (libkrun's limit). A
# kernel brings up at most its CONFIG_NR_CPUS (the lean kernel: 16); a
# sandbox asking for more is refused.
max_cpus = 8
# Ceiling for memory_mib and for the annotation: 128..4194304.
max_memory_mib = 8192
# Headroom in MiB added to the pod's memory limits for the guest kernel and
# agent: 0..4096.
overhead_memory_mib = 64
# Size in MiB of the tmpfs holding each sandbox's directory (the guest root,
# which the guest can write, and the VMM's state): what a guest can put
# there, charged to the pod's memory. 32..1048576.
root_size_mib = 256
# The guest console kept per sandbox (console.log, and the part before it in
# console.log.1), in KiB: 4..1048576.
console_log_max_kib = 1024
# Seconds a sandbox's guest may take from the VMM's start until its agent
# serves, before the start fails: 0..3600; 0 = automatic (10, or 120 where
# libkrun_path names the emulated engine of the tests, whose guests boot
# under QEMU's software emulation).
ready_timeout_s = 0
`

// Parse parses and validates a configuration document. source names it in
// errors (normally its path). Keys absent from data keep their defaults.
func Parse(data []byte, source string) (*Config, error) {
	c := Default()
	c.Source = source
	if err := decode(data, source, c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads the configuration file at path. path "" means DefaultPath, which
// may be absent (Default() is returned); a path named explicitly must exist.
func Load(path string) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = defaultPath
	}
	data, err := readFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return Default(), nil
		}
		return nil, err
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	c.Path = path
	return c, nil
}

func readFile(path string) ([]byte, error) {
	fail := func(problem string, err error) error {
		return &Error{Source: path, Problems: []string{problem}, Err: err}
	}
	// Stat before opening, so that a FIFO or device is refused rather than
	// blocking the shim.
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fail(fmt.Sprintf("file does not exist; a configuration file named explicitly must exist (only the default %s may be absent)", DefaultPath), err)
		}
		return nil, fail(err.Error(), err)
	}
	if !st.Mode().IsRegular() {
		return nil, fail(fmt.Sprintf("is not a regular file (%s); a TOML file is accepted", st.Mode().Type()), nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(err.Error(), err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fail(err.Error(), err)
	}
	if len(data) > MaxFileSize {
		return nil, fail(fmt.Sprintf("file is larger than %d bytes, the most accepted", MaxFileSize), nil)
	}
	return data, nil
}

// decode decodes data strictly into target, turning go-toml's errors into an
// *Error that names keys, values and what is accepted.
func decode(data []byte, source string, target any) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(target)
	if err == nil {
		return nil
	}
	var problems []string
	var sme *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &sme):
		for i := range sme.Errors {
			problems = append(problems, unknownKeyProblem(&sme.Errors[i]))
		}
	case errors.As(err, &de):
		problems = append(problems, decodeProblem(data, de))
	default:
		problems = append(problems, err.Error())
	}
	return &Error{Source: source, Problems: problems, Err: err}
}

// unknownKeyProblem describes a key or table that the schema does not have
// and lists the keys accepted where it was found.
func unknownKeyProblem(de *toml.DecodeError) string {
	key := de.Key()
	row, _ := de.Position()
	what := "key"
	if strings.Contains(de.Error(), "table") {
		what = "table"
	}
	level, names := acceptedAt(key)
	where := "top-level keys accepted"
	if level != "" {
		where = "keys accepted in [" + level + "]"
	}
	return fmt.Sprintf("unknown %s %s (line %d); %s: %s", what, quote(dotted(key)), row, where, strings.Join(names, ", "))
}

// acceptedAt walks key through the schema and returns the table in which it
// stops matching and the keys that table accepts.
func acceptedAt(key toml.Key) (string, []string) {
	t := reflect.TypeFor[Config]()
	for i, part := range key {
		f, ok := fieldByTag(t, part)
		if !ok || f.Type.Kind() != reflect.Struct || i == len(key)-1 {
			return dotted(key[:i]), tagsOf(t)
		}
		t = f.Type
	}
	return "", tagsOf(reflect.TypeFor[Config]())
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("toml") == tag && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tagsOf(t reflect.Type) []string {
	var tags []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			tags = append(tags, tag)
		}
	}
	sort.Strings(tags)
	return tags
}

// decodeProblem describes a syntax error or a value of the wrong type.
func decodeProblem(data []byte, de *toml.DecodeError) string {
	row, col := de.Position()
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	key := de.Key()
	if len(key) == 0 {
		return fmt.Sprintf("TOML syntax error at line %d, column %d: %s", row, col, msg)
	}
	if strings.HasPrefix(msg, "cannot decode ") {
		// "cannot decode TOML string into struct field config.VMConfig.CPUs
		// of type int": keep the TOML side, the Go side means nothing here.
		if i := strings.Index(msg, " into "); i >= 0 {
			msg = "wrong type: " + strings.TrimPrefix(msg[:i], "cannot decode ")
		}
	}
	k := dotted(key)
	tok := tokenAt(data, row, col)
	if tok == "" || tok == keyPart(key[len(key)-1]) {
		// The error is about the key itself (defined twice, an array of
		// tables where a table belongs), not about a value.
		p := fmt.Sprintf("line %d, column %d: %s (at key %s)", row, col, msg, quote(k))
		if s, ok := acceptedValues[k]; ok {
			p += "; accepted: " + s
		}
		return p
	}
	return fmt.Sprintf("%s = %s (line %d): %s; accepted: %s", k, tok, row, msg, acceptedFor(k))
}

// tokenAt returns the TOML value text at 1-based row and column of data, cut
// short when long, or "" when there is none.
func tokenAt(data []byte, row, col int) string {
	start := 0
	for r := 1; r < row; r++ {
		i := bytes.IndexByte(data[start:], '\n')
		if i < 0 {
			return ""
		}
		start += i + 1
	}
	pos := start + col - 1
	if col < 1 || pos >= len(data) {
		return ""
	}
	rest := data[pos:]
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[:i]
	}
	end := len(rest)
	if len(rest) > 0 && (rest[0] == '"' || rest[0] == '\'') {
		q := rest[0]
		for i := 1; i < len(rest); i++ {
			if q == '"' && rest[i] == '\\' {
				i++
				continue
			}
			if rest[i] == q {
				end = i + 1
				break
			}
		}
	} else if i := bytes.IndexAny(rest, " \t\r,]}#"); i >= 0 {
		end = i
	}
	tok := strings.TrimSpace(string(rest[:end]))
	if len(tok) > maxShown {
		cut := maxShown
		for cut > 0 && !isRuneStart(tok[cut]) {
			cut--
		}
		tok = tok[:cut] + "..."
	}
	return tok
}

func dotted(key []string) string {
	parts := make([]string, len(key))
	for i, p := range key {
		parts[i] = keyPart(p)
	}
	return strings.Join(parts, ".")
}

// keyPart writes one key part as TOML would: bare when it can be.
func keyPart(p string) string {
	if p == "" {
		return `""`
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Sprintf("%q", p)
		}
	}
	return p
}

// acceptedFor says what a key accepts.
func acceptedFor(key string) string {
	if strings.HasPrefix(key, "kernel.paths.") {
		return acceptedPath
	}
	if s, ok := acceptedValues[key]; ok {
		return s
	}
	return "see the keys and values in the example configuration (containerd-shim-boxlite-v2 config-example)"
}

const (
	acceptedPath    = "an absolute path to a libkrunfw-ABI file (libkrunfw.so.5)"
	acceptedDir     = `an absolute directory path other than "/"`
	acceptedLibkrun = `"" (search the dynamic loader path for libkrun.so.1) or an absolute path to libkrun.so.1`
)

var acceptedValues = map[string]string{
	"libkrun_path":           acceptedLibkrun,
	"state_dir":              acceptedDir,
	"cache_dir":              acceptedDir,
	"kernel":                 "a table: [kernel] with default, allowed, paths",
	"kernel.default":         fmt.Sprintf("a known kernel variant (%s) listed in kernel.allowed", variantList()),
	"kernel.allowed":         fmt.Sprintf("a non-empty list of distinct known kernel variants (%s)", variantList()),
	"kernel.paths":           fmt.Sprintf("a table mapping known kernel variants (%s) to absolute paths", variantList()),
	"annotations":            "a table: [annotations] with enabled",
	"annotations.enabled":    fmt.Sprintf("a list of distinct known annotations (%s), or %q for all of them", strings.Join(KnownAnnotations(), ", "), AnnotationWildcard),
	"vm":                     "a table: [vm] with cpus, memory_mib, max_cpus, max_memory_mib, overhead_memory_mib, root_size_mib, console_log_max_kib, ready_timeout_s",
	"vm.cpus":                "an integer from 1 to vm.max_cpus",
	"vm.memory_mib":          fmt.Sprintf("an integer from %d to vm.max_memory_mib", MinMemoryMiB),
	"vm.max_cpus":            fmt.Sprintf("an integer from 1 to %d (libkrun's x86_64 MP table holds at most %d vCPUs)", MaxVCPUs, MaxVCPUs),
	"vm.max_memory_mib":      fmt.Sprintf("an integer from %d to %d", MinMemoryMiB, MaxMemoryMiB),
	"vm.overhead_memory_mib": fmt.Sprintf("an integer from 0 to %d", MaxOverheadMemoryMiB),
	"vm.root_size_mib":       fmt.Sprintf("an integer from %d to %d", MinRootSizeMiB, MaxRootSizeMiB),
	"vm.console_log_max_kib": fmt.Sprintf("an integer from %d to %d", MinConsoleLogMaxKiB, MaxConsoleLogMaxKiB),
	"vm.ready_timeout_s":     fmt.Sprintf("an integer from 0 (automatic) to %d", MaxReadyTimeoutS),
}

func variantList() string {
	names := kernel.Names()
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}

func isAbsPath(p string) bool {
	return filepath.IsAbs(p) && !strings.ContainsRune(p, 0)
}

func isStateDir(p string) bool {
	return isAbsPath(p) && filepath.Clean(p) != "/"
}

// sourceName names the configuration in messages.
func (c *Config) sourceName() string {
	switch {
	case c.Source != "":
		return c.Source
	case c.Path != "":
		return c.Path
	default:
		return SourceDefaults
	}
}

// Validate checks every value and reports all problems at once in an *Error.
func (c *Config) Validate() error {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if c.LibkrunPath != "" && !isAbsPath(c.LibkrunPath) {
		add("libkrun_path = %s: must be %s", quote(c.LibkrunPath), acceptedLibkrun)
	}
	if !isStateDir(c.StateDir) {
		add("state_dir = %s: must be %s", quote(c.StateDir), acceptedDir)
	}
	if !isStateDir(c.CacheDir) {
		add("cache_dir = %s: must be %s", quote(c.CacheDir), acceptedDir)
	}

	// [kernel]
	allowedOK := len(c.Kernel.Allowed) > 0
	if len(c.Kernel.Allowed) == 0 {
		add("kernel.allowed = []: is empty; must be %s", acceptedValues["kernel.allowed"])
	}
	seen := map[kernel.Name]bool{}
	for _, n := range c.Kernel.Allowed {
		if _, err := kernel.Parse(string(n)); err != nil {
			allowedOK = false
			add("kernel.allowed = %s: %s is not a known kernel variant; must be %s", quoteList(c.Kernel.Allowed), quote(string(n)), acceptedValues["kernel.allowed"])
		} else if seen[n] {
			add("kernel.allowed = %s: %s is listed twice; must be %s", quoteList(c.Kernel.Allowed), quote(string(n)), acceptedValues["kernel.allowed"])
		}
		seen[n] = true
	}
	if _, err := kernel.Parse(string(c.Kernel.Default)); err != nil {
		add("kernel.default = %s: is not a known kernel variant; must be %s", quote(string(c.Kernel.Default)), acceptedValues["kernel.default"])
	} else if allowedOK && !seen[c.Kernel.Default] {
		add("kernel.default = %s: is not listed in kernel.allowed = %s; must be %s (add it to kernel.allowed or choose another default)", quote(string(c.Kernel.Default)), quoteList(c.Kernel.Allowed), acceptedValues["kernel.default"])
	}
	for _, n := range sortedKeys(c.Kernel.Paths) {
		path := c.Kernel.Paths[n]
		key := "kernel.paths." + keyPart(string(n))
		if _, err := kernel.Parse(string(n)); err != nil {
			add("%s = %s: %s is not a known kernel variant; keys of [kernel.paths] must be known kernel variants (%s)", key, quote(path), quote(string(n)), variantList())
		} else if !isAbsPath(path) {
			add("%s = %s: must be %s", key, quote(path), acceptedPath)
		}
	}

	// [annotations]
	seenAnn := map[string]bool{}
	for _, a := range c.Annotations.Enabled {
		if !isKnownAnnotation(a) && a != AnnotationWildcard {
			add("annotations.enabled = %s: %s is not a known annotation; must be %s", quoteList(c.Annotations.Enabled), quote(a), acceptedValues["annotations.enabled"])
		} else if seenAnn[a] {
			add("annotations.enabled = %s: %s is listed twice; must be %s", quoteList(c.Annotations.Enabled), quote(a), acceptedValues["annotations.enabled"])
		}
		seenAnn[a] = true
	}

	// [vm]
	v := c.VM
	maxCPUs := v.MaxCPUs
	if v.MaxCPUs < 1 || v.MaxCPUs > MaxVCPUs {
		add("vm.max_cpus = %d: must be %s", v.MaxCPUs, acceptedValues["vm.max_cpus"])
		maxCPUs = MaxVCPUs
	}
	maxMem := v.MaxMemoryMiB
	if v.MaxMemoryMiB < MinMemoryMiB || v.MaxMemoryMiB > MaxMemoryMiB {
		add("vm.max_memory_mib = %d: must be %s", v.MaxMemoryMiB, acceptedValues["vm.max_memory_mib"])
		maxMem = MaxMemoryMiB
	}
	if v.CPUs < 1 || v.CPUs > maxCPUs {
		add("vm.cpus = %d: must be an integer from 1 to vm.max_cpus (%d)", v.CPUs, maxCPUs)
	}
	if v.MemoryMiB < MinMemoryMiB || v.MemoryMiB > maxMem {
		add("vm.memory_mib = %d: must be an integer from %d to vm.max_memory_mib (%d)", v.MemoryMiB, MinMemoryMiB, maxMem)
	}
	if v.OverheadMemoryMiB < 0 || v.OverheadMemoryMiB > MaxOverheadMemoryMiB {
		add("vm.overhead_memory_mib = %d: must be %s", v.OverheadMemoryMiB, acceptedValues["vm.overhead_memory_mib"])
	}
	if v.RootSizeMiB < MinRootSizeMiB || v.RootSizeMiB > MaxRootSizeMiB {
		add("vm.root_size_mib = %d: must be %s", v.RootSizeMiB, acceptedValues["vm.root_size_mib"])
	}
	if v.ConsoleLogMaxKiB < MinConsoleLogMaxKiB || v.ConsoleLogMaxKiB > MaxConsoleLogMaxKiB {
		add("vm.console_log_max_kib = %d: must be %s", v.ConsoleLogMaxKiB, acceptedValues["vm.console_log_max_kib"])
	}
	if v.ReadyTimeoutS < 0 || v.ReadyTimeoutS > MaxReadyTimeoutS {
		add("vm.ready_timeout_s = %d: must be %s", v.ReadyTimeoutS, acceptedValues["vm.ready_timeout_s"])
	}

	if len(p) > 0 {
		return &Error{Source: c.sourceName(), Problems: p}
	}
	return nil
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// KernelPolicy returns what this configuration says about kernels, as package
// kernel takes it. The slices and maps are copies.
func (c *Config) KernelPolicy() kernel.Policy {
	p := kernel.Policy{
		Default: c.Kernel.Default,
		Allowed: append([]kernel.Name(nil), c.Kernel.Allowed...),
	}
	if len(c.Kernel.Paths) > 0 {
		p.Paths = make(map[kernel.Name]string, len(c.Kernel.Paths))
		for k, v := range c.Kernel.Paths {
			p.Paths[k] = v
		}
	}
	return p
}
