package preflight

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKVMDeviceMissingOrWrong(t *testing.T) {
	dir := t.TempDir()
	notKVM := filepath.Join(dir, "file")
	if err := os.WriteFile(notKVM, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dev, want string
	}{
		{"missing", filepath.Join(dir, "absent"), "does not exist"},
		{"not a kvm device", notKVM, "KVM_GET_API_VERSION"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := KVMDevice
			KVMDevice = tc.dev
			t.Cleanup(func() { KVMDevice = old })
			r := KVM()
			if r.Status != Fail || !strings.Contains(r.Detail, tc.want) || r.Fix == "" {
				t.Fatalf("KVM() = %+v", r)
			}
		})
	}
}

// TestKVMHost runs the real check against this host's /dev/kvm.
func TestKVMHost(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("this host has no /dev/kvm:", err)
	}
	r := KVM()
	t.Logf("%+v", r)
	if r.Status == Fail {
		t.Fatalf("/dev/kvm exists but the check failed: %+v", r)
	}
	_, pvm := os.Stat(pvmModule)
	if (pvm == nil) != (r.Status == Warn) {
		t.Fatalf("PVM detection: module present=%v, status=%v", pvm == nil, r.Status)
	}
}

// TestVCPUProbe runs the minimal guest on this host's KVM and logs the
// verdict; on a PVM host it must fail and say so.
func TestVCPUProbe(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("this host has no /dev/kvm:", err)
	}
	r := VCPU()
	t.Logf("%+v", r)
	if r.Status == Fail && r.Fix == "" {
		t.Fatal("a failed probe must say what to do")
	}
	if _, err := os.Stat(pvmModule); err == nil && r.Status == Fail && !strings.Contains(r.Fix, "PVM") {
		t.Fatalf("on a PVM host the failure must name PVM: %+v", r)
	}
}
