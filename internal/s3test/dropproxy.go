package s3test

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// DropProxy forwards TCP connections to a server, and when Drop is set,
// drops the next reply (closes the connection once the server has
// answered): the request was carried out, and the client never hears of
// it. Tests of conditional writes whose reply is lost use it.
type DropProxy struct {
	// Drop, when set, loses the next reply and is cleared.
	Drop   atomic.Bool
	ln     net.Listener
	target string
}

// StartDropProxy starts a proxy to target (host:port) on a free loopback
// port, closed when the test ends.
func StartDropProxy(tb testing.TB, target string) *DropProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &DropProxy{ln: ln, target: target}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// Addr is the proxy's host:port.
func (p *DropProxy) Addr() string { return p.ln.Addr().String() }

func (p *DropProxy) serve(c net.Conn) {
	defer c.Close()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer u.Close()
	go io.Copy(u, c)
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 && p.Drop.CompareAndSwap(true, false) {
			return // the reply is lost
		}
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
