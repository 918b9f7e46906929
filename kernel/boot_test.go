package kernel

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestCheckCPUs(t *testing.T) {
	lean := Features{NRCPUs: 16, NRCPUsFrom: NRCPUsFromLibkrunfw}
	for _, tc := range []struct {
		name string
		f    Features
		cpus int
		want string // "" = accepted
	}{
		{"at the limit", lean, 16, ""},
		{"over the limit", lean, 17, "17 vCPUs: kernel variant lean brings up at most 16 CPUs (libkrunfw's x86_64 config"},
		{"unknown limit", Features{}, 200, ""},
		{"from the config", Features{NRCPUs: 64, NRCPUsFrom: NRCPUsFromIKConfig}, 65, "at most 64 CPUs (CONFIG_NR_CPUS in the embedded config); set vm.cpus (or the io.boxlite.cpus annotation) to 64 or less"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCPUs(Lean, tc.f, tc.cpus)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("CheckCPUs: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err)):
				t.Errorf("CheckCPUs: %v, want an invalid-argument error containing %q", err, tc.want)
			}
		})
	}
}

// InspectCached reads a file once, and again once it has changed.
func TestInspectCached(t *testing.T) {
	path := writeTemp(t, join([]byte("\x00Linux version 6.12.91 #1\x00"), []byte("\x00tsi_hijack\x00")))
	f, err := InspectCached(path)
	if err != nil || f.TSI != Yes {
		t.Fatalf("InspectCached = %+v, %v; want TSI yes", f, err)
	}
	if err := os.WriteFile(path, []byte("\x00Linux version 6.12.91 #1\x00 tsi_hijack removed "), 0o644); err != nil {
		t.Fatal(err)
	}
	// A different size and mtime: the cached answer must not be reused.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if f, err = InspectCached(path); err != nil || f.TSI != No {
		t.Fatalf("after the change: InspectCached = %+v, %v; want TSI no", f, err)
	}
	if _, err := InspectCached(path + ".absent"); err == nil {
		t.Error("InspectCached of a missing file returned no error")
	}
}
