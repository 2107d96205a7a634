package mariadbtest

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from 127.0.0.1:Port to a server, and can
// drop the network between them silently, as a partition or a firewall that
// drops packets does: nothing is closed or reset, and both sides just stop
// hearing from each other (Blackhole). Restore brings the network back.
//
// While the network is down:
//   - the connections that were open stay open, and no byte goes either
//     way. The bytes that were on their way are delivered after Restore,
//     as TCP's retransmissions would; an end that closed its side meanwhile
//     finds out only then.
//   - a new connection is accepted (as the kernel's listen queue would) but
//     gets no answer, ever, also after Restore: as if its SYN was dropped
//     and the client gave up. The client must time out and try again.
type Proxy struct {
	Host string // always "127.0.0.1"
	Port int

	target string
	ln     net.Listener

	mu     sync.Mutex
	up     *sync.Cond // broadcast when the network returns or the proxy closes
	down   bool
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// StartProxy starts a proxy to target ("host:port") and registers a cleanup
// that closes it and every connection through it.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("mariadbtest: proxy: %v", err)
	}
	p := &Proxy{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.up = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Proxy starts a proxy to the server (see StartProxy).
func (s *Server) Proxy(tb testing.TB) *Proxy {
	tb.Helper()
	return StartProxy(tb, net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))
}

// Addr is the proxy's address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// Blackhole drops the network silently, until Restore.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
}

// Restore brings the network back: the connections that were open carry
// on, with what was held up delivered first.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
	p.up.Broadcast()
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.up.Broadcast()
	p.ln.Close()
	p.wg.Wait()
}

// track registers c to be closed by Close; it reports false (and closes c)
// when the proxy is closed already.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// waitUp blocks while the network is down. It reports false once the proxy
// is closed.
func (p *Proxy) waitUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.down && !p.closed {
		p.up.Wait()
	}
	return !p.closed
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			// Never answered: the client times out. Close closes it.
			continue
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

// forward connects client to the target and copies both ways until either
// side ends.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	go func() { p.pump(server, client); done <- struct{}{} }()
	go func() { p.pump(client, server); done <- struct{}{} }()
	<-done
	// One side ended (after the network was up to deliver that): end both.
	client.Close()
	server.Close()
	<-done
}

// pump copies src to dst, holding what it read while the network is down.
func (p *Proxy) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if !p.waitUp() {
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
