//go:build kernel_lean

package kernel

import _ "embed"

// The lean blob, packed by kernel/pack from the deps cache (see blobs/README.md).

//go:embed blobs/lean/libkrunfw.so.5.zst
var leanZst []byte

//go:embed blobs/lean/libkrunfw.so.5.sha256
var leanMeta string

func init() { register(Lean, leanZst, leanMeta) }
