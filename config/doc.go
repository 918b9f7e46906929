// Package config owns the shim's configuration: the TOML file (by default
// /etc/boxlite/config.toml, or the file or inline body named by containerd's
// runtime options), its defaults, the validation of every value, and the
// shim's own allowlist gate for io.boxlite.* annotations.
//
// Parsing is strict: an unknown key, a value of the wrong type or a value out
// of range is an error that names the key, the value and what is accepted.
// Nothing is silently corrected or ignored. Every such error matches
// errdefs.ErrInvalidArgument under errors.Is.
//
// It must not start VMs, stage or choose kernels (package kernel does, under
// the kernel.Policy this package hands it), create or write files or
// directories (state_dir and cache_dir are only validated here), log, or read
// anything but the one configuration file it is asked for.
package config
