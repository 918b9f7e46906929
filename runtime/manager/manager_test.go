package manager

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"

	"github.com/boxlite/boxlite-shim/config"
	"github.com/boxlite/boxlite-shim/kernel"
)

func TestGroupID(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        string
	}{
		{"ctr run: own id", nil, "task1"},
		{"cri sandbox", map[string]string{config.AnnotationSandboxID: "pod1", config.AnnotationContainerType: "sandbox"}, "pod1"},
		{"cri container joins its pod", map[string]string{config.AnnotationSandboxID: "pod1", config.AnnotationContainerType: "container"}, "pod1"},
		{"empty sandbox id", map[string]string{config.AnnotationSandboxID: ""}, "task1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := GroupID("task1", tc.annotations); got != tc.want {
				t.Fatalf("GroupID = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadBundleSpec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string // "" = no file
		wantErr error
	}{
		{"valid", `{"annotations":{"io.boxlite.kernel":"net"}}`, nil},
		{"malformed", `{"annotations":`, errdefs.ErrInvalidArgument},
		{"missing", "", os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.content != "" {
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, err := readBundleSpec(dir)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || s.Annotations[kernel.Annotation] != "net" {
				t.Fatalf("spec = %+v, err = %v", s, err)
			}
		})
	}
}

// TestInfo checks what `-info` reports: the runtime name, the annotations the
// shim understands, and the runtime options it was given (echoed back).
func TestInfo(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfgPath, []byte("[kernel]\ndefault = \"lean\"\nallowed = [\"lean\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := proto.Marshal(opts)
	if err != nil {
		t.Fatal(err)
	}
	info, err := New("io.containerd.boxlite.v2").Info(context.Background(), bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "io.containerd.boxlite.v2" {
		t.Fatalf("name = %q", info.Name)
	}
	for _, a := range config.KnownAnnotations() {
		if info.Annotations[a] == "" {
			t.Errorf("annotation %s not reported", a)
		}
	}
	if info.Annotations["io.boxlite.kernel.default"] != "lean" {
		t.Errorf("default kernel = %q", info.Annotations["io.boxlite.kernel.default"])
	}
	if info.Options == nil {
		t.Fatal("options not echoed")
	}
	v, err := typeurl.UnmarshalAny(info.Options)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(*runtimeoptions.Options).ConfigPath; got != cfgPath {
		t.Fatalf("options ConfigPath = %q", got)
	}
	f, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(*features.Features).Annotations[kernel.Annotation]; !ok {
		t.Fatalf("features do not list %s", kernel.Annotation)
	}

	// A config the options name but that does not exist is an error.
	opts, _ = typeurl.MarshalAnyToProto(&runtimeoptions.Options{ConfigPath: filepath.Join(t.TempDir(), "absent.toml")})
	raw, _ = proto.Marshal(opts)
	if _, err := New("io.containerd.boxlite.v2").Info(context.Background(), bytes.NewReader(raw)); err == nil {
		t.Fatal("Info accepted a missing ConfigPath")
	}
}
