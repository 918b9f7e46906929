//go:build kernel_net

package kernel

import _ "embed"

// The net blob, packed by kernel/pack from the deps cache (see blobs/README.md).

//go:embed blobs/net/libkrunfw.so.5.zst
var netZst []byte

//go:embed blobs/net/libkrunfw.so.5.sha256
var netMeta string

func init() { register(Net, netZst, netMeta) }
