package kernel

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSelect(t *testing.T) {
	both := Policy{Default: Lean, Allowed: []Name{Lean, Net}}
	leanOnly := Policy{Default: Lean, Allowed: []Name{Lean}}
	netDefault := Policy{Default: Net, Allowed: []Name{Lean, Net}}
	ann := func(v string) map[string]string { return map[string]string{Annotation: v} }

	tests := []struct {
		name        string
		annotations map[string]string
		policy      Policy
		want        Name
		wantErr     []string // substrings of the error; nil: no error
	}{
		{name: "nil annotations give the default", policy: both, want: Lean},
		{name: "absent gives the default", annotations: map[string]string{"other": "net"}, policy: both, want: Lean},
		{name: "empty gives the default", annotations: ann(""), policy: both, want: Lean},
		{name: "absent gives a net default", policy: netDefault, want: Net},
		{name: "lean", annotations: ann("lean"), policy: both, want: Lean},
		{name: "net", annotations: ann("net"), policy: both, want: Net},
		{name: "lean under a net default", annotations: ann("lean"), policy: netDefault, want: Lean},
		{name: "similar keys are ignored", annotations: map[string]string{"io.boxlite.kernels": "net", "io.boxlite.Kernel": "net"}, policy: leanOnly, want: Lean},
		{name: "bogus", annotations: ann("xyz"), policy: both,
			wantErr: []string{Annotation, `"xyz"`, "known variants are lean, net"}},
		{name: "upper case", annotations: ann("NET"), policy: both,
			wantErr: []string{`"NET"`, "known variants are lean, net"}},
		{name: "trailing space", annotations: ann("lean "), policy: both,
			wantErr: []string{`"lean "`, "known variants are lean, net"}},
		{name: "a path", annotations: ann("/boot/vmlinuz"), policy: both,
			wantErr: []string{`"/boot/vmlinuz"`}},
		{name: "long value is cut short", annotations: ann(strings.Repeat("x", 5000)), policy: both,
			wantErr: []string{"... (5000 bytes)"}},
		{name: "not allowed", annotations: ann("net"), policy: leanOnly,
			wantErr: []string{"kernel variant net is not allowed by configuration (allowed: lean); add it to [kernel] allowed"}},
		{name: "nothing allowed", annotations: ann("lean"), policy: Policy{Default: Lean},
			wantErr: []string{"kernel variant lean is not allowed", "(allowed: (none))"}},
		{name: "default not allowed", policy: Policy{Default: Net, Allowed: []Name{Lean}},
			wantErr: []string{"default kernel variant net is not allowed by configuration (allowed: lean)"}},
		{name: "no default", policy: Policy{Allowed: []Name{Lean}},
			wantErr: []string{"no default kernel variant", "[kernel] default"}},
		{name: "unknown default", policy: Policy{Default: "fat", Allowed: []Name{Lean}},
			wantErr: []string{`"fat"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(tt.annotations, tt.policy)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("Select = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Select = %q, want an error", got)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %v does not match ErrInvalidArgument", err)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if len(err.Error()) > 512 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
		})
	}
}

func FuzzSelect(f *testing.F) {
	for _, s := range []string{"", "lean", "net", "NET", "lean ", "xyz", "\x00", "lean\nnet", "\xff\xfe", strings.Repeat("é", 100)} {
		f.Add(s)
	}
	policies := []Policy{
		{Default: Lean, Allowed: []Name{Lean, Net}},
		{Default: Lean, Allowed: []Name{Lean}},
		{Default: Net, Allowed: []Name{Net}},
		{Default: Net, Allowed: []Name{Lean}},
		{},
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, p := range policies {
			got, err := Select(map[string]string{Annotation: v}, p)
			if err != nil {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("Select(%q) error %v does not match ErrInvalidArgument", v, err)
				}
				if len(err.Error()) > 512 {
					t.Fatalf("Select(%q) error is %d bytes long", v, len(err.Error()))
				}
				continue
			}
			if !p.Allows(got) {
				t.Fatalf("Select(%q) = %q, which %+v does not allow", v, got, p)
			}
			if v == "" && got != p.Default {
				t.Fatalf("Select(%q) = %q, want the default %q", v, got, p.Default)
			}
			if v != "" && string(got) != v {
				t.Fatalf("Select(%q) = %q: substituted a variant", v, got)
			}
		}
	})
}
