// Package qemu boots the net guest kernel under QEMU's software emulation (no
// KVM, no libkrun) to test, with a real guest kernel, what the libkrun test
// double cannot show: the pod network path into a guest. QEMU stands in for
// libkrun's virtio-net TAP backend only; everything else is the product's —
// podnet.Attach in a CNI-like pod namespace, and the guest agent configuring
// the virtio-net eth0 from what Attach described.
package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxlite/boxlite-shim/runtime/netns"
	"github.com/boxlite/boxlite-shim/runtime/podnet"
	"github.com/boxlite/boxlite-shim/test/ctrd"
	"github.com/boxlite/boxlite-shim/test/netnstest"
)

// guestInit is the guest's /init: the agent configures the pod network (it
// then keeps serving on vsock, in the background), then guestprobe reaches a
// server on the node and serves on the pod IP; markers go to the serial
// console.
const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/boxlite-agent -init no -network /network.json >/dev/console 2>&1 &
i=0
until ip -o addr show dev eth0 2>/dev/null | grep -q " inet "; do
	i=$((i+1)); [ $i -gt 200 ] && { echo "BOXLITE-QEMU eth0 never configured"; reboot -f; }
	sleep 0.1
done
echo "BOXLITE-QEMU addr $(ip -o -4 addr show dev eth0 | awk '{print $4}')"
echo "BOXLITE-QEMU route $(ip route | grep default)"
echo "BOXLITE-QEMU mac $(cat /sys/class/net/eth0/address)"
exec /guestprobe -fetch http://%s/ -listen :8080 -body hello-from-the-guest >/dev/console 2>&1
`

func TestPodNetworkInARealGuest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make network namespaces and TAP devices")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64 on this host (make deps installs it for the net kernel's QEMU proof): cannot boot a guest kernel without KVM")
	}
	vmlinux := filepath.Join(ctrd.Deps(), "kernels", "net", "vmlinux")
	busybox := filepath.Join(ctrd.Deps(), "busybox", "busybox")
	agent := filepath.Join(ctrd.BinDir(t), "boxlite-agent")
	ctrd.Require(t, vmlinux, busybox, agent)
	probe := filepath.Join(t.TempDir(), "guestprobe")
	build := exec.Command("go", "build", "-o", probe, "./guestprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building guestprobe: %v: %s", err, out)
	}

	// What CNI's bridge plugin makes: the pod's eth0, one end of a veth
	// pair whose other end (the gateway) is on the node.
	pod, node := netnstest.New(t), netnstest.New(t)
	netnstest.Sh(t, node, "ip link add veth-node type veth peer name eth0 && ip link set eth0 netns "+pod+
		" && ip addr add 10.99.0.1/24 dev veth-node && ip link set veth-node up")
	netnstest.Sh(t, pod, "ip link set lo up && ip link set eth0 up && ip addr add 10.99.0.2/24 dev eth0 && ip route add default via 10.99.0.1")
	att, err := podnet.Attach(pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := podnet.Detach(pod, att.PodLink); err != nil {
			t.Error(err)
		}
	})

	// A server on the node, for the guest to reach.
	var ln net.Listener
	if err := netns.In(node, func() (err error) { ln, err = net.Listen("tcp", "10.99.0.1:9090"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello-from-the-node") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	initrd := buildInitrd(t, map[string]string{
		"bin/busybox":   busybox,
		"boxlite-agent": agent,
		"guestprobe":    probe,
	}, map[string]string{
		"init":         fmt.Sprintf(guestInit, "10.99.0.1:9090"),
		"network.json": mustJSON(t, att.Guest),
	})

	// QEMU in the pod's namespace, as the VMM is, with the TAP Attach made
	// as the guest's virtio-net device and the pod's MAC.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+pod, qemu,
		"-M", "microvm,acpi=off", "-cpu", "max", "-nodefaults", "-no-user-config", "-nographic",
		"-serial", "stdio", "-m", "256", "-kernel", vmlinux, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 reboot=t rdinit=/init", "-no-reboot",
		"-netdev", "tap,id=n0,ifname="+att.Tap+",script=no,downscript=no",
		"-device", "virtio-net-device,netdev=n0,mac="+att.Guest.MAC)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	markers := map[string]string{}
	var transcript strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		transcript.WriteString(line + "\n")
		if rest, ok := strings.CutPrefix(line, "BOXLITE-QEMU "); ok {
			k, v, _ := strings.Cut(rest, " ")
			markers[k] = v
			if k == "ready" || k == "eth0" || k == "listen-failed" {
				break
			}
		}
	}
	if _, ok := markers["ready"]; !ok {
		t.Fatalf("the guest did not get ready; serial console:\n%s", transcript.String())
	}
	t.Logf("guest: %v", markers)
	defer func() {
		if t.Failed() {
			t.Logf("serial console:\n%s", transcript.String())
		}
	}()
	for k, want := range map[string]string{
		"addr":    "10.99.0.2/24",
		"route":   "default via 10.99.0.1 dev eth0",
		"mac":     att.Guest.MAC,
		"fetched": "hello-from-the-node",
	} {
		if got := strings.TrimSpace(markers[k]); !strings.HasPrefix(got, want) {
			t.Errorf("guest %s = %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(transcript.String(), "network: "+att.Guest.MAC+" up with [10.99.0.2/24]") {
		t.Errorf("the agent did not report configuring the network; serial console:\n%s", transcript.String())
	}
	// In from the node, at the pod IP. (A raw dial: net/http dials on
	// another goroutine, which would not be in the node's namespace.)
	var resp []byte
	err = netns.In(node, func() error {
		c, err := net.DialTimeout("tcp", "10.99.0.2:8080", 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: 10.99.0.2\r\n\r\n"); err != nil {
			return err
		}
		resp, err = io.ReadAll(c)
		return err
	})
	if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.0 200") || !strings.HasSuffix(string(resp), "\r\n\r\nhello-from-the-guest") {
		t.Errorf("node -> pod IP 10.99.0.2:8080: %v %q", err, resp)
	}
}

// buildInitrd writes a gzipped newc cpio archive of the given files (copied
// from host paths) and contents (written as is; "init" is made executable).
func buildInitrd(t *testing.T, files, contents map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for dst, body := range contents {
		if err := os.WriteFile(filepath.Join(root, dst), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	initrd := filepath.Join(filepath.Dir(root), "initrd.cpio.gz")
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet | gzip -1 > "+initrd)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initrd: %v: %s", err, out)
	}
	return initrd
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
