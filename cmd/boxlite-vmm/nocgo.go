//go:build !cgo

package main

import (
	"fmt"
	"os"
)

// Without cgo there is no dlopen: this stub keeps `go build ./...` working
// with CGO_ENABLED=0 and says how to build the real VMM.
func main() {
	fmt.Fprintln(os.Stderr, "boxlite-vmm: libkrun is not available: this boxlite-vmm was built without cgo; rebuild it with CGO_ENABLED=1 and a C compiler (make vmm)")
	os.Exit(3)
}
