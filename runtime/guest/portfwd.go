package guest

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// dialLoopback connects to port on the guest's loopback, in the agent's
// network namespace (the pod's containers' network): IPv4 first, then
// IPv6, as containerd's CRI does in a pod's namespace.
func dialLoopback(port uint16) (net.Conn, error) {
	p := strconv.Itoa(int(port))
	c, err4 := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", p), 10*time.Second)
	if err4 == nil {
		return c, nil
	}
	c, err6 := net.DialTimeout("tcp6", net.JoinHostPort("::1", p), 10*time.Second)
	if err6 == nil {
		return c, nil
	}
	return nil, fmt.Errorf("port forward: nothing answers on port %d in the guest (IPv4: %v; IPv6: %v)", port, err4, err6)
}
