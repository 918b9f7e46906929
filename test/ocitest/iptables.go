package ocitest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// IptablesImageName is the name the iptables test image is imported under.
const IptablesImageName = "docker.io/boxlite/iptables:test"

// iptablesPackages are Debian's legacy iptables and what its
// xtables-legacy-multi needs to run (its NEEDED libraries and the C
// library); the nft variant's libraries are left out.
var iptablesPackages = []string{"iptables", "libxtables12", "libip4tc2", "libip6tc2", "libc6"}

// IptablesImage writes an OCI image-layout archive to out: the busybox test
// image with one more layer, IptablesRootfs, so that `iptables` (legacy) is
// on its PATH. deps is the dependency cache the rootfs is kept in.
func IptablesImage(busybox, deps, out string) error {
	root, err := IptablesRootfs(deps)
	if err != nil {
		return err
	}
	if err := BusyboxImage(busybox, out, IptablesImageName); err != nil {
		return err
	}
	return AddDirLayer(out, root)
}

// IptablesRootfs returns a directory holding Debian's iptables package and
// the libraries its legacy binary needs, unpacked with dpkg -x (never
// installed) from the system release's packages (apt-get download), with
// /usr/sbin/iptables a link to xtables-legacy-multi (what Debian's
// alternatives make it when legacy is chosen) and no documentation or
// gconv modules. It is built once, into <deps>/images/iptables, under a lock
// and renamed into place complete; packages.txt there names the packages
// and versions.
func IptablesRootfs(deps string) (string, error) {
	dir := filepath.Join(deps, "images", "iptables")
	root := filepath.Join(dir, "rootfs")
	if _, err := os.Stat(filepath.Join(dir, "packages.txt")); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(filepath.Join(deps, "images"), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(deps, "images", "iptables.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "packages.txt")); err == nil {
		return root, nil // another process built it meanwhile
	}
	tmp, err := os.MkdirTemp(filepath.Join(deps, "images"), "iptables.tmp")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	debs := filepath.Join(tmp, "debs")
	if err := os.Mkdir(debs, 0o755); err != nil {
		return "", err
	}
	dl := exec.Command("apt-get", append([]string{"-q", "-o", "APT::Sandbox::User=root", "download"}, iptablesPackages...)...)
	dl.Dir = debs
	if out, err := dl.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s (Debian's archive, for the iptables test image): %v\n%s", strings.Join(iptablesPackages, " "), err, out)
	}
	ents, err := os.ReadDir(debs)
	if err != nil {
		return "", err
	}
	troot := filepath.Join(tmp, "rootfs")
	var manifest bytes.Buffer
	for _, e := range ents {
		deb := filepath.Join(debs, e.Name())
		if out, err := exec.Command("dpkg-deb", "-x", deb, troot).CombinedOutput(); err != nil {
			return "", fmt.Errorf("dpkg-deb -x %s: %v\n%s", e.Name(), err, out)
		}
		info, err := exec.Command("dpkg-deb", "--show", "--showformat=${Package} ${Version}\n", deb).Output()
		if err != nil {
			return "", fmt.Errorf("dpkg-deb --show %s: %v", e.Name(), err)
		}
		manifest.Write(info)
	}
	for _, p := range []string{"usr/share", "usr/lib/x86_64-linux-gnu/gconv"} {
		if err := os.RemoveAll(filepath.Join(troot, p)); err != nil {
			return "", err
		}
	}
	legacy := filepath.Join(troot, "usr", "sbin", "xtables-legacy-multi")
	if _, err := os.Stat(legacy); err != nil {
		return "", fmt.Errorf("the iptables package holds no usr/sbin/xtables-legacy-multi: %w", err)
	}
	for _, name := range []string{"iptables", "iptables-save", "iptables-restore"} {
		if err := os.Symlink("xtables-legacy-multi", filepath.Join(troot, "usr", "sbin", name)); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "packages.txt"), manifest.Bytes(), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(debs); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	_ = os.RemoveAll(dir) // an incomplete one (no packages.txt)
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return root, nil
}
