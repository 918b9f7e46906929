// Command mkimage writes the busybox test image as an OCI archive, for `ctr
// image import` (the demo and the end-to-end tests use it).
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
	name := flag.String("name", ocitest.ImageName, "image name")
	flag.Parse()
	if err := ocitest.BusyboxImage(*busybox, *out, *name); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}
