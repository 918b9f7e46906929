package guest

import (
	"reflect"
	"strings"
	"testing"
)

// The agent's flags come through whatever words the guest's init puts
// around them. Before ParseFlags, cmd/boxlite-agent used the flag package
// as is: "tsi_hijack" ahead of the flags (what libkrun's init hands the
// agent from a kernel without the TSI patch) made every flag after it a
// positional argument, and the agent exited 2 ("unexpected arguments"); seen
// failing that way under the test double (runtime/vmm TestAgentUnderInit).
func TestParseFlags(t *testing.T) {
	def := Flags{VsockPort: 1024, CgroupRoot: "/sys/fs/cgroup/boxlite", Init: "auto"}
	for _, tc := range []struct {
		name    string
		args    []string
		want    Flags
		ignored []string
		err     string
	}{
		{name: "none", want: def},
		{name: "own flags", args: []string{"-vsock-port", "2000", "-cgroup-root=/sys/fs/cgroup/x", "--init", "no", "-network", "/n.json", "-ready-port", "1025"},
			want: Flags{VsockPort: 2000, CgroupRoot: "/sys/fs/cgroup/x", Init: "no", Network: "/n.json", ReadyPort: 1025}},
		{name: "tsi_hijack first", args: []string{"tsi_hijack", "-vsock-port", "1025"},
			want: Flags{VsockPort: 1025, CgroupRoot: def.CgroupRoot, Init: "auto"}, ignored: []string{"tsi_hijack"}},
		{name: "words between and after", args: []string{"tsi_hijack", "tsi_hijack_unix", "-vsock-port", "1025", "stray", "-init", "yes", "last"},
			want: Flags{VsockPort: 1025, CgroupRoot: def.CgroupRoot, Init: "yes"}, ignored: []string{"tsi_hijack", "tsi_hijack_unix", "stray", "last"}},
		{name: "dashes end the flags", args: []string{"-init", "no", "--", "-vsock-port", "9"},
			want: Flags{VsockPort: 1024, CgroupRoot: def.CgroupRoot, Init: "no"}, ignored: []string{"-vsock-port", "9"}},
		{name: "unknown flag", args: []string{"tsi_hijack", "-vsock-prot", "1"}, err: "flag provided but not defined: -vsock-prot"},
		{name: "missing value", args: []string{"-vsock-port"}, err: "flag needs an argument"},
		{name: "bad value", args: []string{"-vsock-port", "x"}, err: "invalid value"},
		{name: "help", args: []string{"-h"}, err: "not defined: -help"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ignored, err := ParseFlags(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "-vsock-port, -cgroup-root, -init, -network, -ready-port") {
					t.Fatalf("ParseFlags: %v, want an error with %q naming the agent's flags", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFlags: %v", err)
			}
			if got != tc.want || !reflect.DeepEqual(ignored, tc.ignored) {
				t.Errorf("ParseFlags = %+v, ignored %q; want %+v, ignored %q", got, ignored, tc.want, tc.ignored)
			}
		})
	}
}
