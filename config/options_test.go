package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	toml "github.com/pelletier/go-toml/v2"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/boxlite/boxlite-shim/kernel"
)

// optionsAny builds the Any containerd sends: typeurl.MarshalAnyToProto of
// runtimeoptions.v1.Options.
func optionsAny(t *testing.T, o *runtimeoptions.Options) *anypb.Any {
	t.Helper()
	a, err := typeurl.MarshalAnyToProto(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestOptionsTypeURL(t *testing.T) {
	a := optionsAny(t, &runtimeoptions.Options{ConfigPath: "/x"})
	if a.GetTypeUrl() != "runtimeoptions.v1.Options" {
		t.Errorf("type URL %q", a.GetTypeUrl())
	}
}

func TestLoadFromOptions(t *testing.T) {
	withDefaultPath(t, filepath.Join(t.TempDir(), "absent.toml"))
	netFile := writeFile(t, "net.toml", "[kernel]\ndefault = \"net\"\n")
	badFile := writeFile(t, "bad.toml", "[kernel]\ndefualt = \"net\"\n")
	missing := filepath.Join(t.TempDir(), "missing.toml")

	// What containerd's CRI plugin sends as config_body when the handler's
	// options section names no ConfigPath: the section itself, as TOML.
	criBody, err := toml.Marshal(map[string]any{
		"TypeUrl":    "io.boxlite.config.v1",
		"ConfigPath": "",
		"kernel":     map[string]any{"default": "net"},
		"vm":         map[string]any{"cpus": 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	anyWithPrefix, err := anypb.New(&runtimeoptions.Options{ConfigPath: netFile})
	if err != nil {
		t.Fatal(err)
	}
	other, err := typeurl.MarshalAnyToProto(wrapperspb.String("x"))
	if err != nil {
		t.Fatal(err)
	}

	type want struct {
		def    kernel.Name
		path   string
		source string
		errs   []string
	}
	defaults := want{def: kernel.Lean, source: SourceDefaults}
	fromNet := want{def: kernel.Net, path: netFile, source: netFile}
	for _, tc := range []struct {
		name string
		opts typeurl.Any
		want want
	}{
		{"nil", nil, defaults},
		{"typed nil", (*anypb.Any)(nil), defaults},
		{"empty Any", &anypb.Any{}, defaults},
		{"empty options", optionsAny(t, &runtimeoptions.Options{}), defaults},
		{"only TypeUrl", optionsAny(t, &runtimeoptions.Options{TypeUrl: "x"}), defaults},
		{"config path", optionsAny(t, &runtimeoptions.Options{ConfigPath: netFile}), fromNet},
		{"config path as typeurl.Any", func() typeurl.Any {
			a, err := typeurl.MarshalAny(&runtimeoptions.Options{ConfigPath: netFile})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}(), fromNet},
		{"type.googleapis.com prefix", anyWithPrefix, fromNet},
		{"path wins over body", optionsAny(t, &runtimeoptions.Options{ConfigPath: netFile, ConfigBody: []byte("garbage = =")}), fromNet},
		{"config body", optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("[kernel]\ndefault = \"net\"\n")}), want{def: kernel.Net, source: SourceOptionsBody}},
		{"config body from CRI", optionsAny(t, &runtimeoptions.Options{ConfigBody: criBody}), want{def: kernel.Net, source: SourceOptionsBody}},

		{"missing config path", optionsAny(t, &runtimeoptions.Options{ConfigPath: missing}), want{errs: []string{missing, "does not exist"}}},
		{"relative config path", optionsAny(t, &runtimeoptions.Options{ConfigPath: "boxlite.toml"}), want{errs: []string{`runtime option ConfigPath = "boxlite.toml": must be an absolute path`}}},
		{"invalid file", optionsAny(t, &runtimeoptions.Options{ConfigPath: badFile}), want{errs: []string{badFile, `unknown key "kernel.defualt"`}}},
		{"invalid body", optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("[vm]\ncpus = 0\n")}), want{errs: []string{SourceOptionsBody, "vm.cpus = 0"}}},
		{"body with typo", optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("SystemdCgroup = true\n")}), want{errs: []string{SourceOptionsBody, `unknown key "SystemdCgroup"`}}},
		{"body naming a file", optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("ConfigPath = \"/x\"\n")}), want{errs: []string{`ConfigPath = "/x": a config_body cannot name a file`}}},
		{"other options type", other, want{errs: []string{`runtime options of type "google.protobuf.StringValue" are not accepted`, "runtimeoptions.v1.Options"}}},
		{"corrupt options", &anypb.Any{TypeUrl: "runtimeoptions.v1.Options", Value: []byte{0xff, 0xff}}, want{errs: []string{"do not decode"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadFromOptions(tc.opts)
			if tc.want.errs != nil {
				wantContains(t, err, tc.want.errs...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Kernel.Default != tc.want.def || c.Path != tc.want.path || c.Source != tc.want.source {
				t.Errorf("default %q, Path %q, Source %q; want %+v", c.Kernel.Default, c.Path, c.Source, tc.want)
			}
		})
	}
}

func TestLoadFromOptionsReadsDefaultPath(t *testing.T) {
	withDefaultPath(t, writeFile(t, "config.toml", "[vm]\ncpus = 3\n"))
	for _, opts := range []typeurl.Any{nil, optionsAny(t, &runtimeoptions.Options{})} {
		c, err := LoadFromOptions(opts)
		if err != nil || c.VM.CPUs != 3 {
			t.Errorf("LoadFromOptions(%v) = %+v, %v", opts, c, err)
		}
	}
	// A body replaces the file: the default file is not read.
	c, err := LoadFromOptions(optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("# empty\n")}))
	if err != nil || c.VM.CPUs != 1 {
		t.Errorf("body config = %+v, %v", c, err)
	}
}

func TestPathFromOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts typeurl.Any
		want string
		err  bool
	}{
		{"nil", nil, "", false},
		{"empty", &anypb.Any{}, "", false},
		{"path", optionsAny(t, &runtimeoptions.Options{ConfigPath: "/etc/boxlite/net.toml"}), "/etc/boxlite/net.toml", false},
		{"body only", optionsAny(t, &runtimeoptions.Options{ConfigBody: []byte("x")}), "", false},
		{"other type", &anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{}}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PathFromOptions(tc.opts)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("PathFromOptions = %q, %v; want %q, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestLoadFromOptionsMissingMatchesNotExist(t *testing.T) {
	_, err := LoadFromOptions(optionsAny(t, &runtimeoptions.Options{ConfigPath: "/nonexistent/boxlite.toml"}))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not match fs.ErrNotExist", err)
	}
}
