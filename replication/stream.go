// Package replication is the client side of MariaDB replication: it checks
// a primary and streams its binlog events from a GTID position as a
// registered replica. It is the only package that imports go-mysql; the
// rest of understudy sees raw event bytes.
package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	gmrepl "github.com/go-mysql-org/go-mysql/replication"

	"github.com/understudy-db/understudy"
)

// Handler receives every event of the stream, in order, as whole raw
// events (header, body, CRC32). The slice is only valid during the call.
// When semi-sync is on, the primary gets its ACK after HandleEvent returns
// nil for the event that asked for one.
type Handler interface {
	HandleEvent(ev []byte) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ev []byte) error

// HandleEvent calls f.
func (f HandlerFunc) HandleEvent(ev []byte) error { return f(ev) }

// Stream connects to src as a replica, asks for everything after start and
// passes each event to h until ctx ends (it then returns nil) or an error
// occurs. It never retries by itself: the caller resumes from its own
// durable position.
//
// A network that drops packets without a reset is noticed quickly: the
// connection and its handshake are bounded by ConnectTimeout, the wait for
// the first event by DumpTimeout (and TCP keepalives), and the stream by
// the heartbeat: no byte for DeadAfter(heartbeat) means a dead stream.
// These errors carry ErrTimeout.
func Stream(ctx context.Context, src understudy.Source, start understudy.Position, log *slog.Logger, h Handler) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hb := src.Heartbeat
	if hb <= 0 {
		hb = time.Second
	}
	gset, err := mysql.ParseMariadbGTIDSet(start.String())
	if err != nil {
		return fmt.Errorf("GTID position %q: %w", start, err)
	}
	// The first connection dialed is the dump connection. Later ones are
	// for the KILL that ends its dump thread on close: once the network is
	// known to be dead, they fail at once rather than time out too.
	var dumpConn atomic.Pointer[watchConn]
	var dead, timedOut, stopping atomic.Bool
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dead.Load() {
			return nil, errDeadNetwork
		}
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			if isTimeout(err) {
				timedOut.Store(true)
			}
			return nil, err
		}
		wc := &watchConn{Conn: c, timeout: ConnectTimeout, timedOut: &timedOut}
		if dumpConn.CompareAndSwap(nil, wc) {
			// A catch-up reads hundreds of megabytes as fast as the
			// primary sends them: a large receive buffer lets it send
			// while the handler writes.
			if tc, ok := c.(*net.TCPConn); ok && dumpReadBuffer > 0 {
				tc.SetReadBuffer(dumpReadBuffer)
			}
			if stopping.Load() {
				wc.setMode(modeClosed)
			}
		}
		return wc, nil
	}
	// The end of ctx fails the dump connection's reads and writes at once,
	// whatever it waits for.
	stopAfter := context.AfterFunc(ctx, func() {
		stopping.Store(true)
		if dc := dumpConn.Load(); dc != nil {
			dc.setMode(modeClosed)
		}
	})
	defer stopAfter()
	d := &dump{src: src, hb: hb, dial: dial, log: log}
	closeDump := func() {
		if timedOut.Load() {
			dead.Store(true)
		}
		d.close(!dead.Load())
	}
	if err := d.start(ctx, gset.String()); err != nil {
		timeout := timedOut.Load()
		closeDump()
		switch {
		case ctx.Err() != nil:
			return nil
		case timeout:
			return timeoutError(src, "connect to", fmt.Sprintf("no answer within %s", ConnectTimeout), unreachable, err)
		}
		return classify(src, err)
	}
	// The dump request is sent: the primary now reads its binlog up to the
	// position, without a heartbeat, before it sends the first event.
	if dc := dumpConn.Load(); dc != nil {
		dc.setMode(modeDumping)
	}
	silence := DeadAfter(hb)
	var silent atomic.Bool
	wctx, stopWatch := context.WithCancel(ctx)
	go func() {
		// The primary sends a heartbeat every hb when idle. A connection
		// that waits for bytes and gets none for silence is dead, even if
		// TCP has not noticed. Time spent in the handler (an fsync, a
		// sealed file) is not silence: no read waits then.
		t := time.NewTicker(silence / 8)
		defer t.Stop()
		var last uint64
		since := time.Now()
		for {
			select {
			case <-wctx.Done():
				return
			case now := <-t.C:
				dc := dumpConn.Load()
				if dc == nil || dc.mode.Load() != modeStreaming {
					since = now
					continue
				}
				if n := dc.io.Load(); n != last || n%2 == 0 {
					last, since = n, now
				} else if now.Sub(since) >= silence {
					// A deadline in the past fails the blocked read at
					// once, or the blocked write: a semi-sync ACK that a
					// primary which stopped reading its socket never
					// takes.
					silent.Store(true)
					timedOut.Store(true)
					dc.Conn.SetDeadline(time.Now())
					return
				}
			}
		}
	}()
	started := func() {
		if dc := dumpConn.Load(); dc != nil {
			dc.setMode(modeStreaming)
		}
	}
	err = d.stream(h, started, stopping.Load)
	stopWatch()
	timeout := timedOut.Load()
	closeDump()
	switch {
	case ctx.Err() != nil:
		return nil
	case silent.Load():
		return timeoutError(src, "stream from", fmt.Sprintf("no event or heartbeat for %s", silence), unreachable, nil)
	case timeout:
		// No first event within DumpTimeout, or TCP gave up.
		if dc := dumpConn.Load(); dc != nil && dc.mode.Load() == modeDumping {
			return timeoutError(src, "stream from", fmt.Sprintf("no event within %s of the dump request", DumpTimeout),
				"a network that drops packets, or, on a semi-sync primary, a dump thread of this server_id stuck (SHOW PROCESSLIST; docs/replication.md); retrying", err)
		}
		return timeoutError(src, "stream from", "no answer", unreachable, err)
	}
	return classify(src, err)
}

// dumpReadBuffer is the socket receive buffer of the dump connection.
const dumpReadBuffer = 4 << 20

// DeadAfter is how long a stream with heartbeat period hb may stay silent
// before it is taken for dead: two heartbeats, and at least a second.
func DeadAfter(hb time.Duration) time.Duration {
	return max(2*hb, time.Second)
}

// ConnectTimeout bounds each step of reaching a primary: the TCP connect,
// and each answer during the login and the queries that precede the dump
// (Check's connection included). A live primary answers within
// milliseconds; one that does not answer for this long sits behind a
// network that drops packets, and the caller tries again soon, rather
// than wait on a connection that may never answer.
const ConnectTimeout = 2 * time.Second

// DumpTimeout bounds the wait for the first event after the dump request.
// The primary first reads its binlog file from the start up to the
// position, without sending anything (not even a heartbeat), which takes
// seconds for a large file. Meanwhile TCP keepalives notice a dead network.
const DumpTimeout = 60 * time.Second

// dialer dials the dump connection: keepalives begin after ConnectTimeout
// of quiet and give up after 5 unanswered probes a second apart. They only
// matter while no heartbeat is due (before the first event); the heartbeat
// watchdog is quicker after it.
var dialer = net.Dialer{Timeout: ConnectTimeout, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: ConnectTimeout, Interval: time.Second, Count: 5}}

var errDeadNetwork = errors.New("the network to the primary is dead (no answer); not connecting again to end the old session")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unreachable is the hint of most timeouts.
const unreachable = "host unreachable, or the network drops packets; retrying"

// timeoutError is the error of a primary that did not answer in time.
func timeoutError(src understudy.Source, op, what, hint string, err error) error {
	e := fmt.Errorf("timed out: %s", what)
	if err != nil {
		e = fmt.Errorf("timed out: %s (%v)", what, err)
	}
	return &understudy.Error{Op: op + " " + src.Addr(), Err: withCause(e, ErrTimeout), Hint: hint}
}

// handshakeTimeout bounds each read of OldestPosition's connection.
const handshakeTimeout = 10 * time.Second

// Modes of a watchConn, in the order a dump connection goes through them.
const (
	modeHandshake int32 = iota // a deadline before every read
	modeDumping                // one deadline, DumpTimeout after the dump request
	modeStreaming              // no deadline: the heartbeat watchdog watches
	modeClosed                 // a deadline in the past: the stream ends
)

// watchConn bounds the reads of a connection until it streams: each read
// gets timeout during the handshake, and the first event DumpTimeout. A
// streaming connection is watched by the heartbeat watchdog instead, which
// costs nothing per event: io counts the entries into and exits from Read
// and Write, so that it is odd while the connection waits on the network.
type watchConn struct {
	net.Conn
	timeout  time.Duration
	timedOut *atomic.Bool // set when a deadline ended a read
	io       atomic.Uint64
	mode     atomic.Int32
	mu       sync.Mutex // orders mode changes with the deadlines they set
}

func (c *watchConn) Read(b []byte) (int, error) {
	if c.mode.Load() == modeHandshake {
		c.mu.Lock()
		if c.mode.Load() == modeHandshake {
			c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		}
		c.mu.Unlock()
	}
	c.io.Add(1)
	n, err := c.Conn.Read(b)
	c.io.Add(1)
	if err != nil && c.timedOut != nil && isTimeout(err) && c.mode.Load() != modeClosed {
		c.timedOut.Store(true)
	}
	return n, err
}

func (c *watchConn) Write(b []byte) (int, error) {
	c.io.Add(1)
	n, err := c.Conn.Write(b)
	c.io.Add(1)
	return n, err
}

// setMode moves the connection on to mode m (never back) and sets the
// deadline that goes with it.
func (c *watchConn) setMode(m int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mode.Load() >= m {
		return
	}
	c.mode.Store(m)
	switch m {
	case modeDumping:
		c.Conn.SetReadDeadline(time.Now().Add(DumpTimeout))
	case modeStreaming:
		c.Conn.SetReadDeadline(time.Time{})
	case modeClosed:
		c.Conn.SetDeadline(time.Now())
	}
}

// classify turns go-mysql errors into understudy errors with hints.
func classify(src understudy.Source, err error) error {
	if err == nil {
		return nil
	}
	var me *mysql.MyError
	if errors.As(err, &me) {
		return describe(src, int(me.Code), me.Message, err)
	}
	if code, msg, ok := parseErrorText(err.Error()); ok {
		return describe(src, code, msg, err)
	}
	return &understudy.Error{Op: "stream from " + src.Addr(), Err: err}
}

// warnOnly keeps go-mysql's chatty info logs out of understudy's log.
type warnOnly struct{ slog.Handler }

func (h warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

// Handle drops go-mysql's report of killing its previous connection, which
// is routine when a stream closes and not an error of understudy's, and its
// report of the read that ended a stream, whose error Stream returns.
func (h warnOnly) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "kill connection" || r.Message == "retry sync is disabled" || strings.HasSuffix(r.Message, "connection was bad") {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{h.Handler.WithAttrs(as)} }

func (h warnOnly) WithGroup(name string) slog.Handler { return warnOnly{h.Handler.WithGroup(name)} }

// newSyncer is the go-mysql replica of OldestPosition's probe (Stream has
// its own dump loop, in dump.go): raw mode (the bytes are archived, not
// decoded), CRC32s verified, ANNOTATE events requested, no retries of its
// own.
func newSyncer(src understudy.Source, hb time.Duration, dial func(ctx context.Context, network, addr string) (net.Conn, error), log *slog.Logger, h gmrepl.EventHandler) *gmrepl.BinlogSyncer {
	return gmrepl.NewBinlogSyncer(gmrepl.BinlogSyncerConfig{
		Dialer:          dial,
		ServerID:        src.ServerID,
		Flavor:          mysql.MariaDBFlavor,
		Host:            src.Host,
		Port:            uint16(src.Port),
		User:            src.User,
		Password:        src.Password,
		Localhost:       "understudy",
		TLSConfig:       src.TLS,
		SemiSyncEnabled: src.SemiSync,
		RawModeEnabled:  true,
		HeartbeatPeriod: hb,
		// No per-packet read deadline: setting one costs two clock reads
		// and a syscall per event. Stream's watchdog detects silence.
		ReadTimeout:             0,
		DisableRetrySync:        true,
		VerifyChecksum:          true,
		DumpCommandFlag:         gmrepl.BINLOG_SEND_ANNOTATE_ROWS_EVENT,
		EventCacheCount:         1,
		Logger:                  slog.New(warnOnly{log.Handler()}),
		SynchronousEventHandler: h,
	})
}
