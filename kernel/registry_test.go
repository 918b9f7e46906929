package kernel

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMeta(t *testing.T) {
	const sum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	tests := []struct {
		name, meta, wantSum, wantVersion string
		wantErr                          bool
	}{
		{name: "bare", meta: sum, wantSum: sum},
		{name: "newline", meta: sum + "\n", wantSum: sum},
		{name: "version", meta: sum + "  5.5.0\n", wantSum: sum, wantVersion: "5.5.0"},
		{name: "tab version", meta: sum + "\tlibkrunfw 5.5.0 (linux 6.12.44)\n", wantSum: sum, wantVersion: "libkrunfw 5.5.0 (linux 6.12.44)"},
		{name: "upper case", meta: strings.ToUpper(sum), wantSum: sum},
		{name: "empty", meta: "", wantErr: true},
		{name: "blank", meta: " \n", wantErr: true},
		{name: "short", meta: sum[:63], wantErr: true},
		{name: "long", meta: sum + "0", wantErr: true},
		{name: "not hex", meta: "z" + sum[1:], wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, v, err := parseMeta(tt.meta)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseMeta(%q) = %q, %q; want an error", tt.meta, s, v)
				}
				return
			}
			if err != nil || s != tt.wantSum || v != tt.wantVersion {
				t.Errorf("parseMeta(%q) = %q, %q, %v; want %q, %q", tt.meta, s, v, err, tt.wantSum, tt.wantVersion)
			}
		})
	}
}

func TestRegisterAndEmbedded(t *testing.T) {
	isolateRegistry(t)
	if got := Embedded(); len(got) != 0 {
		t.Fatalf("Embedded() = %v in an empty registry", got)
	}
	if _, ok := EmbeddedSHA256(Lean); ok {
		t.Fatal("EmbeddedSHA256(lean) found a blob in an empty registry")
	}
	// Registration order does not matter: Embedded follows Names.
	_, netSum := registerTestBlob(t, Net, 1024)
	_, leanSum := registerTestBlob(t, Lean, 1024)
	if got, want := Embedded(), []Name{Lean, Net}; !reflect.DeepEqual(got, want) {
		t.Errorf("Embedded() = %v, want %v", got, want)
	}
	for n, want := range map[Name]string{Lean: leanSum, Net: netSum} {
		if got, ok := EmbeddedSHA256(n); !ok || got != want {
			t.Errorf("EmbeddedSHA256(%s) = %q, %v; want %q, true", n, got, ok, want)
		}
	}
}

func TestRegisterRefusesBrokenBlobs(t *testing.T) {
	isolateRegistry(t)
	_, zst, sum := makeBlob(t, 1024)
	register(Lean, zst, sum)
	tests := []struct {
		name string
		n    Name
		zst  []byte
		meta string
	}{
		{"twice", Lean, zst, sum},
		{"unknown variant", "fat", zst, sum},
		{"bad sha", Net, zst, "not-a-sha"},
		{"empty meta", Net, zst, ""},
		{"empty blob", Net, nil, sum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("register(%q, ..., %q) did not panic", tt.n, tt.meta)
				}
			}()
			register(tt.n, tt.zst, tt.meta)
		})
	}
	if got, want := Embedded(), []Name{Lean}; !reflect.DeepEqual(got, want) {
		t.Errorf("after refused registrations Embedded() = %v, want %v", got, want)
	}
}
