package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
	"time"
)

// binaries are the executables a release carries, from -bin, under bin/.
var binaries = []string{"containerd-shim-boxlite-v2", "boxlite-vmm", "boxlite-agent"}

// deployFiles are the node and cluster files a release carries from the
// repository, at the same path: what install.sh installs (and install.sh),
// the RuntimeClasses, and the installer DaemonSet with its image's
// Dockerfile. Nothing only the tests use (test doubles, test workloads,
// *_test.go), and no build inputs (deploy/deps, deploy/kernel).
var deployFiles = []struct {
	path string
	mode os.FileMode
}{
	{"deploy/install/install.sh", 0o755},
	{"deploy/containerd/boxlite.toml", 0o644},
	{"deploy/boxlite/config.toml", 0o644},
	{"deploy/boxlite/config-net.toml", 0o644},
	{"deploy/kubernetes/runtimeclasses.yaml", 0o644},
	{"deploy/kubernetes/boxlite-deploy.yaml", 0o644},
	{"deploy/kubernetes/Dockerfile", 0o644},
}

// Files of the release's top directory that are made, not copied.
const (
	sumsName    = "SHA256SUMS"
	versionName = "VERSION"
	installName = "INSTALL"
	// imageRepo is the installer image boxlite-deploy.yaml runs; the
	// release pins its tag to the release version.
	imageRepo = "boxlite/boxlite-deploy"
)

// file is one regular file of the release: its path below the top
// directory, its mode and its content.
type file struct {
	path string
	mode os.FileMode
	data []byte
}

//go:embed INSTALL.tmpl
var installTemplate string

// layout reads and makes every file of the release but SHA256SUMS, which
// archive adds.
func layout(o options, facts binaryFacts) ([]file, error) {
	var files []file
	for _, b := range binaries {
		data, err := os.ReadFile(filepath.Join(o.bin, b))
		if err != nil {
			return nil, err
		}
		files = append(files, file{"bin/" + b, 0o755, data})
	}
	for _, f := range deployFiles {
		data, err := os.ReadFile(filepath.Join(o.src, filepath.FromSlash(f.path)))
		if err != nil {
			return nil, fmt.Errorf("%w (-src must be the repository root)", err)
		}
		if f.path == "deploy/kubernetes/boxlite-deploy.yaml" {
			if data, err = pinImage(data, o.version); err != nil {
				return nil, fmt.Errorf("%s: %w", f.path, err)
			}
		}
		files = append(files, file{f.path, f.mode, data})
	}
	install, err := installText(o, facts)
	if err != nil {
		return nil, err
	}
	files = append(files,
		file{installName, 0o644, install},
		file{versionName, 0o644, []byte(o.version + "\n")})
	return files, nil
}

// imageLine is the DaemonSet's container image in boxlite-deploy.yaml.
var imageLine = regexp.MustCompile(`(?m)^(\s*image:\s*)` + regexp.QuoteMeta(imageRepo) + `:(\S+)[ \t]*$`)

// pinImage sets the tag of the installer image in boxlite-deploy.yaml to
// version. The manifest must name the image exactly once, with a tag.
func pinImage(manifest []byte, version string) ([]byte, error) {
	if n := len(imageLine.FindAllIndex(manifest, -1)); n != 1 {
		return nil, fmt.Errorf("want exactly one line `image: %s:TAG`, found %d", imageRepo, n)
	}
	return imageLine.ReplaceAll(manifest, []byte("${1}"+imageRepo+":"+version)), nil
}

// tagSyntax is what a container image tag may be (the OCI distribution
// spec's tag grammar): the version becomes the installer image's tag.
var tagSyntax = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func checkVersion(v string) error {
	if !tagSyntax.MatchString(v) {
		return fmt.Errorf("version %q cannot be an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}): it names the installer image boxlite-deploy.yaml pins", v)
	}
	return nil
}

// installText renders INSTALL.
func installText(o options, facts binaryFacts) ([]byte, error) {
	t, err := template.New(installName).Parse(installTemplate)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]any{
		"Version":  o.version,
		"Revision": o.revision,
		"Date":     time.Unix(o.epoch, 0).UTC().Format("2006-01-02 15:04:05 UTC"),
		"Name":     releaseName(o.version),
		"Image":    imageRepo + ":" + o.version,
		"Glibc":    facts.vmmGlibc,
		"VMMLibs":  strings.Join(facts.vmmLibs, ", "),
		"Kernels":  strings.Join(facts.kernels, ", "),
	})
	if err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
