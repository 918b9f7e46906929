package kernel

import (
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestNames(t *testing.T) {
	if got, want := Names(), []Name{Lean, Net}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Name
		wantErr bool
	}{
		{in: "lean", want: Lean},
		{in: "net", want: Net},
		{in: "", wantErr: true},
		{in: "NET", wantErr: true},
		{in: "Lean", wantErr: true},
		{in: "lean ", wantErr: true},
		{in: " net", wantErr: true},
		{in: "xyz", wantErr: true},
		{in: "lean,net", wantErr: true},
		{in: "/usr/lib/libkrunfw.so.5", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %q, want an error", tt.in, got)
				}
				if !errdefs.IsInvalidArgument(err) {
					t.Errorf("Parse(%q) error %v does not match ErrInvalidArgument", tt.in, err)
				}
				for _, s := range []string{"unknown kernel variant", "known variants are lean, net"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Parse(%q) error %q does not say %q", tt.in, err, s)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Parse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPolicyAllows(t *testing.T) {
	tests := []struct {
		allowed []Name
		n       Name
		want    bool
	}{
		{[]Name{Lean, Net}, Lean, true},
		{[]Name{Lean, Net}, Net, true},
		{[]Name{Lean}, Net, false},
		{[]Name{Net}, Lean, false},
		{nil, Lean, false},
		{[]Name{Lean}, "LEAN", false},
	}
	for _, tt := range tests {
		if got := (Policy{Allowed: tt.allowed}).Allows(tt.n); got != tt.want {
			t.Errorf("Policy{Allowed: %v}.Allows(%q) = %v, want %v", tt.allowed, tt.n, got, tt.want)
		}
	}
}
