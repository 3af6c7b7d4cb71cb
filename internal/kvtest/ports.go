package kvtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
)

// A server's port is chosen at random so that the test binaries of several
// packages running at once rarely pick the same one, and so that port+10000
// (the cluster bus port) is free too and below 65536. Ports come from below
// the kernel's ephemeral range when there is room (10000 up to its start
// minus 10000): there, no outgoing connection can grab the port of a killed
// server before [Server.Restart] binds it again. A port is handed out only
// when both it and its bus port can be bound right now, and at most once per
// test binary; a race with another process is caught when the server fails
// to bind, and the start is retried on a new port.
const (
	portMin        = 10000
	clusterBusSkew = 10000
	minPortRange   = 2000
)

var reserved struct {
	sync.Mutex
	ports map[int]bool
}

// portRange returns [lo, hi) to pick server ports from.
func portRange() (lo, hi int) {
	lo, hi = 20000, 50000 // overlaps the ephemeral range: relies on retries
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var ephemeral, ephemeralEnd int
	if _, err := fmt.Sscan(string(b), &ephemeral, &ephemeralEnd); err != nil {
		return lo, hi
	}
	if ephemeral-clusterBusSkew-portMin >= minPortRange {
		return portMin, ephemeral - clusterBusSkew
	}
	return lo, hi
}

// freePort returns a port on host that, together with port+10000, is free.
func freePort(host string) (int, error) {
	reserved.Lock()
	defer reserved.Unlock()
	if reserved.ports == nil {
		reserved.ports = make(map[int]bool)
	}
	lo, hi := portRange()
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		if reserved.ports[port] || reserved.ports[port+clusterBusSkew] ||
			reserved.ports[port-clusterBusSkew] {
			continue
		}
		if !canListen(host, port) || !canListen(host, port+clusterBusSkew) {
			continue
		}
		reserved.ports[port] = true
		return port, nil
	}
	return 0, errors.New("kvtest: no free port pair (port, port+10000) found in 200 tries")
}

func canListen(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
