package kernelhint

import (
	"strings"
	"testing"

	"github.com/boxlite/boxlite-shim/kernel"
)

// dockerdLean is the end of dockerd's log on the lean kernel (Debian 12's
// docker.io 20.10 and iptables 1.8.9, seen in test/dind).
const dockerdLean = `time="2026-12-01T23:47:15.907Z" level=info msg="Loading containers: start."
failed to start daemon: Error initializing network controller: Error creating default "bridge" network: Failed to Setup IP tables: Unable to enable NAT rule:  (iptables failed: iptables --wait -t nat -I POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE: Warning: Extension MASQUERADE revision 0 not supported, missing kernel module?
iptables v1.8.9 (nf_tables):  RULE_INSERT failed (No such file or directory): rule in chain POSTROUTING
 (exit status 4))
`

func TestIptablesError(t *testing.T) {
	for _, tc := range []struct {
		name, output, want string
	}{
		{"dockerd, iptables-nft without nft_compat", dockerdLean, "iptables v1.8.9 (nf_tables):  RULE_INSERT failed (No such file or directory): rule in chain POSTROUTING"},
		{"iptables-legacy without ip_tables", "iptables v1.8.9 (legacy): can't initialize iptables table `nat': Table does not exist (do you need to insmod?)\nPerhaps iptables or your kernel needs to be upgraded.\n",
			"iptables v1.8.9 (legacy): can't initialize iptables table `nat': Table does not exist (do you need to insmod?)"},
		{"ip6tables-legacy", "ip6tables v1.8.9 (legacy): can't initialize ip6tables table `filter': Table does not exist (do you need to insmod?)", "ip6tables v1.8.9 (legacy): can't initialize ip6tables table `filter': Table does not exist (do you need to insmod?)"},
		{"a missing xt extension", "iptables v1.8.9 (nf_tables): Couldn't load match `addrtype':No such file or directory", "iptables v1.8.9 (nf_tables): Couldn't load match `addrtype':No such file or directory"},
		{"extension revision", "iptables: Extension MASQUERADE revision 0 not supported, missing kernel module?", "iptables: Extension MASQUERADE revision 0 not supported, missing kernel module?"},
		{"the last of two", "iptables v1.8.9 (nf_tables):  RULE_APPEND failed (No such file or directory): rule in chain A\nmore\niptables v1.8.9 (nf_tables):  RULE_APPEND failed (No such file or directory): rule in chain B\n",
			"iptables v1.8.9 (nf_tables):  RULE_APPEND failed (No such file or directory): rule in chain B"},
		{"another iptables error", "iptables v1.8.9 (nf_tables): Chain 'FOO' does not exist\n", ""},
		{"a permission error", "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)\n", ""},
		{"ENOENT of something else", "RULE_APPEND failed (No such file or directory)\n", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IptablesError([]byte(tc.output)); got != tc.want {
				t.Errorf("IptablesError = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHint(t *testing.T) {
	noIpt := kernel.Features{IPTables: kernel.No}
	for _, tc := range []struct {
		name    string
		variant kernel.Name
		f       kernel.Features
		output  string
		hint    bool
	}{
		{"lean without iptables, dockerd's error", kernel.Lean, noIpt, dockerdLean, true},
		{"the net kernel", kernel.Net, noIpt, dockerdLean, false},
		{"a kernel with legacy iptables", kernel.Lean, kernel.Features{IPTables: kernel.Yes}, dockerdLean, false},
		{"a kernel not known to lack it", kernel.Lean, kernel.Features{IPTables: kernel.Unknown}, dockerdLean, false},
		{"output without the error", kernel.Lean, noIpt, "exit 1\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Hint("c1", tc.variant, tc.f, []byte(tc.output))
			if (h != "") != tc.hint {
				t.Fatalf("Hint = %q, want a hint: %v", h, tc.hint)
			}
			if h == "" {
				return
			}
			for _, w := range []string{"container c1", "RULE_INSERT failed", "lean kernel has no xtables", "use the net kernel", "RuntimeClass boxlite-net", "io.boxlite.kernel=net"} {
				if !strings.Contains(h, w) {
					t.Errorf("hint %q lacks %q", h, w)
				}
			}
		})
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"under the bound", 16, []string{"one\n", "two\n"}, "one\ntwo\n"},
		{"exactly full", 4, []string{"ab", "cd"}, "abcd"},
		{"wraps", 8, []string{"abc", "defgh", "ij"}, "cdefghij"},
		{"a write over the bound", 8, []string{"abc", "0123456789abcdef"}, "89abcdef"},
		{"after a long write", 8, []string{"0123456789abcdef", "", "XY"}, "abcdefXY"},
		{"many small writes", 3, []string{"a", "b", "c", "d", "e"}, "cde"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := NewTail(tc.max)
			for _, w := range tc.writes {
				if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := string(tl.Bytes()); got != tc.want {
				t.Errorf("tail = %q, want %q", got, tc.want)
			}
		})
	}
}
