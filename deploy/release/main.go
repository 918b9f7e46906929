// Command release packs built binaries and the node files of deploy/ into the
// release tarball an operator installs (`make release` builds the binaries,
// then runs it):
//
//	go run ./deploy/release -version V -revision COMMIT -epoch SECONDS -bin DIR -src REPO -out DIST
//
// It writes DIST/boxlite-shim-V-linux-amd64.tar.gz and, beside it,
// DIST/boxlite-shim-V-linux-amd64.tar.gz.sha256 (a line `sha256sum -c`
// reads). The tarball holds one directory, boxlite-shim-V-linux-amd64/, with
// the layout of the repository that deploy/install/install.sh expects (bin/,
// deploy/...), a short INSTALL text, VERSION, and SHA256SUMS over every other
// file (layout.go says what goes in). It is reproducible: entries in a fixed
// order, every mtime the commit's time (-epoch, as SOURCE_DATE_EPOCH), owner
// root:root (0:0), modes 0755 or 0644 whatever they are on disk, and a gzip
// header with no name or time; the same inputs give the same bytes.
//
// Before packing it checks the binaries: the shim reports version V and
// embeds both kernels, the shim and the agent are static, and it reads the
// glibc the VMM (cgo, dynamically linked) needs from the VMM's ELF version
// references, for INSTALL. It owns the tarball's layout and its
// reproducibility; it builds nothing and must not be imported.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

func main() {
	var o options
	flag.StringVar(&o.version, "version", "", "release version (required; make release computes it with deploy/release/version.sh)")
	flag.StringVar(&o.revision, "revision", "", "git commit the release is built from (required)")
	epoch := flag.String("epoch", "", "mtime of every entry, seconds since 1970 (required; the commit time, as SOURCE_DATE_EPOCH)")
	flag.StringVar(&o.bin, "bin", "", "directory holding the built "+fmt.Sprint(binaries)+" (required)")
	flag.StringVar(&o.src, "src", ".", "repository root (its deploy/ files go in)")
	out := flag.String("out", "dist", "output directory")
	flag.Parse()
	if o.version == "" || o.revision == "" || *epoch == "" || o.bin == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: release -version V -revision COMMIT -epoch SECONDS -bin DIR [-src REPO] [-out DIST]")
		os.Exit(2)
	}
	var err error
	if o.epoch, err = strconv.ParseInt(*epoch, 10, 64); err != nil || o.epoch < 0 {
		fmt.Fprintf(os.Stderr, "release: -epoch %q: want seconds since 1970\n", *epoch)
		os.Exit(2)
	}
	path, err := run(o, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	st, err := os.Stat(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	fmt.Printf("release: wrote %s (%.1f MB) and %s\n", path, float64(st.Size())/1e6, filepath.Base(path)+".sha256")
}

type options struct {
	version, revision string
	epoch             int64
	bin, src          string
}

// run checks the binaries, lays out the release and writes the tarball and
// its .sha256 into out; it returns the tarball's path.
func run(o options, out string) (string, error) {
	if err := checkVersion(o.version); err != nil {
		return "", err
	}
	facts, err := inspectBinaries(o.bin, o.version)
	if err != nil {
		return "", err
	}
	files, err := layout(o, facts)
	if err != nil {
		return "", err
	}
	name := releaseName(o.version)
	data, err := archive(name, o.epoch, files)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	tarball := filepath.Join(out, name+".tar.gz")
	sum := sha256.Sum256(data)
	if err := writeAtomic(tarball, data); err != nil {
		return "", err
	}
	if err := writeAtomic(tarball+".sha256", []byte(hex.EncodeToString(sum[:])+"  "+filepath.Base(tarball)+"\n")); err != nil {
		return "", err
	}
	return tarball, nil
}

// releaseName is the release's top directory, and its tarball's name less .tar.gz.
func releaseName(version string) string { return "boxlite-shim-" + version + "-linux-amd64" }

// writeAtomic writes data to path through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
