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
	// Every connection go-mysql dials gets a read deadline until the
	// stream starts, so that neither the handshake nor the KILL go-mysql
	// sends on close can hang on a primary that went silent. The first
	// connection is the dump connection.
	var dumpConn atomic.Pointer[watchConn]
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		wc := &watchConn{Conn: c, timeout: handshakeTimeout}
		dumpConn.CompareAndSwap(nil, wc)
		return wc, nil
	}
	hd := handler{h: h, started: func() {
		if dc := dumpConn.Load(); dc != nil {
			dc.streaming()
		}
	}}
	syncer := newSyncer(src, hb, dial, log, &hd)
	defer syncer.Close()
	streamer, err := syncer.StartSyncGTID(gset)
	if err != nil {
		return classify(src, err)
	}
	// The primary sends a heartbeat every hb when idle: silence for much
	// longer means a dead connection that TCP has not noticed.
	silence := 3*hb + 5*time.Second
	var silent atomic.Bool
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		t := time.NewTicker(hb)
		defer t.Stop()
		last, since := hd.events.Load(), time.Now()
		for {
			select {
			case <-wctx.Done():
				return
			case now := <-t.C:
				if n := hd.events.Load(); n != last {
					last, since = n, now
				} else if now.Sub(since) > silence {
					// Closing the socket fails the blocked read at once.
					silent.Store(true)
					if dc := dumpConn.Load(); dc != nil {
						dc.Conn.Close()
					}
					return
				}
			}
		}
	}()
	// With a synchronous handler the streamer only ever yields the error
	// that ended the stream.
	_, err = streamer.GetEvent(ctx)
	if ctx.Err() != nil {
		return nil
	}
	if silent.Load() {
		return &understudy.Error{Op: "stream from " + src.Addr(), Err: fmt.Errorf("no event or heartbeat for %s", silence), Hint: ""}
	}
	return classify(src, err)
}

type handler struct {
	h       Handler
	events  atomic.Uint64
	started func()
	once    bool
}

func (h *handler) HandleEvent(e *gmrepl.BinlogEvent) error {
	if !h.once {
		h.once = true
		h.started()
	}
	h.events.Add(1)
	return h.h.HandleEvent(e.RawData)
}

// handshakeTimeout bounds each read of a connection before its stream
// starts.
const handshakeTimeout = 10 * time.Second

// watchConn sets a read deadline before every read until streaming is
// called; a streaming connection is watched by heartbeats instead, which
// costs nothing per event.
type watchConn struct {
	net.Conn
	timeout time.Duration
	stream  atomic.Bool
}

func (c *watchConn) Read(b []byte) (int, error) {
	if !c.stream.Load() {
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(b)
}

func (c *watchConn) streaming() {
	if c.stream.CompareAndSwap(false, true) {
		c.Conn.SetReadDeadline(time.Time{})
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
// is routine when a stream closes and not an error of understudy's.
func (h warnOnly) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "kill connection" || r.Message == "retry sync is disabled" {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{h.Handler.WithAttrs(as)} }

func (h warnOnly) WithGroup(name string) slog.Handler { return warnOnly{h.Handler.WithGroup(name)} }

// newSyncer is the go-mysql replica every connection of understudy uses:
// raw mode (the bytes are archived, not decoded), CRC32s verified, ANNOTATE
// events requested, no retries of its own.
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
