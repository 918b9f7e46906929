// Package install holds the tests of the files in deploy/ that put the shim on
// a node: install.sh (install, uninstall, and from an unpacked release the
// check of its SHA256SUMS), the containerd drop-in
// (deploy/containerd/boxlite.toml), the shim configurations of the two CRI
// handlers (deploy/boxlite/), the RuntimeClasses and the installer DaemonSet
// (deploy/kubernetes/). It has no code of its own.
package install
