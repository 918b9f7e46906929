// Command pause is the pod sandbox's process in the critest harness, as
// Kubernetes' pause image has it: a process named pause that waits for a
// signal and exits 0 on SIGINT or SIGTERM, starting no other process (a
// spec looks for the processes named sleep in a pod's shared PID namespace).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
