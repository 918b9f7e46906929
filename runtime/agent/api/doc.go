// Package api is the guest agent's API: agent.proto, the Go code generated
// from it (agent.pb.go, agent_ttrpc.pb.go; regenerate with generate.sh, the
// Makefile's generate target), and the connection preamble every connection
// to the agent starts with (conn.go).
package api
