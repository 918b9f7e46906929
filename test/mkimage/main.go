// Command mkimage writes the busybox test image as an OCI archive, for `ctr
// image import` (the demo and the end-to-end tests use it). With -dir, a
// directory's tree is added as a second layer; with -iptables, Debian's
// legacy iptables and its libraries (ocitest.IptablesRootfs, cached in the
// deps cache) are, and the image is named ocitest.IptablesImageName unless
// -name says otherwise.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/boxlite/boxlite-shim/test/ocitest"
)

func main() {
	busybox := flag.String("busybox", "", "path of a static busybox")
	out := flag.String("o", "busybox-oci.tar", "output archive")
	name := flag.String("name", "", "image name (default "+ocitest.ImageName+", or "+ocitest.IptablesImageName+" with -iptables)")
	dir := flag.String("dir", "", "a directory whose tree becomes a second layer")
	iptables := flag.Bool("iptables", false, "add Debian's legacy iptables as a second layer (built once into $BOXLITE_DEPS/images/iptables)")
	flag.Parse()
	if *dir != "" && *iptables {
		fail(fmt.Errorf("-dir and -iptables exclude each other"))
	}
	if *name == "" {
		*name = ocitest.ImageName
		if *iptables {
			*name = ocitest.IptablesImageName
		}
	}
	if *iptables {
		deps := os.Getenv("BOXLITE_DEPS")
		if deps == "" {
			deps = "/var/cache/boxlite-deps"
		}
		root, err := ocitest.IptablesRootfs(deps)
		if err != nil {
			fail(err)
		}
		*dir = root
	}
	if err := ocitest.BusyboxImage(*busybox, *out, *name); err != nil {
		fail(err)
	}
	if *dir != "" {
		if err := ocitest.AddDirLayer(*out, *dir); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkimage:", err)
	os.Exit(1)
}
