#!/bin/sh
# Regenerates the agent API's Go code from agent.proto (make generate).
# Needs protoc (Debian: protobuf-compiler). The two Go plugins are installed,
# at the versions go.mod pins, into $TOOLS (default bin/tools).
set -eu
cd "$(dirname "$0")/../../.."
TOOLS=${TOOLS:-$PWD/bin/tools}
command -v protoc >/dev/null || { echo "generate: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
pbver=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
ttver=$(go list -m -f '{{.Version}}' github.com/containerd/ttrpc)
mkdir -p "$TOOLS"
have() { [ -x "$TOOLS/$1" ] && [ "$(cat "$TOOLS/$1.version" 2>/dev/null)" = "$2" ]; }
if ! have protoc-gen-go "$pbver"; then
	GOBIN="$TOOLS" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$pbver"
	echo "$pbver" >"$TOOLS/protoc-gen-go.version"
fi
if ! have protoc-gen-go-ttrpc "$ttver"; then
	GOBIN="$TOOLS" go install "github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@$ttver"
	echo "$ttver" >"$TOOLS/protoc-gen-go-ttrpc.version"
fi
PATH="$TOOLS:$PATH" protoc -I runtime/agent/api -I /usr/include \
	--go_out=paths=source_relative:runtime/agent/api \
	--go-ttrpc_out=paths=source_relative:runtime/agent/api \
	runtime/agent/api/agent.proto
gofmt -l runtime/agent/api
echo "generate: runtime/agent/api/agent.pb.go, agent_ttrpc.pb.go ($(protoc --version), protoc-gen-go $pbver, protoc-gen-go-ttrpc $ttver)"
