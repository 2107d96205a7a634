// Package binlogserver serves a source's archive to MariaDB replicas over
// the replication protocol: understudy acts as the primary. It speaks the
// conversation a MariaDB 10.x replica IO thread expects and streams whole
// transactions from the archive, tailing it live. docs/binlog-server.md
// describes the conversation.
package binlogserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/server"

	"github.com/understudy-db/understudy"
)

// Version is the server version announced to replicas. A MariaDB replica
// strips the "5.5.5-" prefix and needs a major version of 10 or more to use
// GTIDs.
const Version = "5.5.5-10.11.99-MariaDB-understudy"

// Config configures a Server.
type Config struct {
	// Source names the archived source, for logs and messages.
	Source string
	// Dir is the source's archive directory.
	Dir string
	// User and Password are what replicas must authenticate with.
	User, Password string
	// ServerID is the server_id announced to replicas. It must differ from
	// every replica's own server_id.
	ServerID uint32
	// TLS, if set, lets replicas use TLS, and requires it: a client that
	// logs in without TLS is refused (see TLSOptional).
	TLS *tls.Config
	// TLSOptional, with TLS set, also accepts clients without TLS
	// (serve.tls.required: false).
	TLSOptional bool
	// HandshakeTimeout bounds the time from accepting a connection to a
	// completed login (default 10s); a client that has not logged in by
	// then is disconnected.
	HandshakeTimeout time.Duration
	// MaxConns limits the connections open at once, logged in or not
	// (default 256). A connection beyond it gets ERR 1040 (too many
	// connections) and is closed at once.
	MaxConns int
	// Stop, if set, holds every stream at a stop point: replicas catch up
	// to exactly that point and wait there.
	Stop understudy.StopPoint
	// Notify, if set, returns a channel closed when new transactions are
	// durable (the archive writer's). Without it the archive is polled.
	Notify func() <-chan struct{}
	// Poll is the polling interval without Notify (default 100ms).
	Poll   time.Duration
	Logger *slog.Logger
	// Metrics, if set, counts the errors sent to replicas and the
	// connections refused.
	Metrics *Metrics
	// Databases, if set, limits what replicas apply to these databases
	// beyond what their own table filters can: statements that create,
	// change or drop a procedure, function, package or event of another
	// database reach them as no-ops (restore --databases).
	Databases []string
}

// Server serves one source's archive.
type Server struct {
	cfg   Config
	log   *slog.Logger
	mysql *server.Server

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	addr  net.Addr
	ready chan struct{}

	lastErr     string
	lastErrTime time.Time

	// busyLogged is when a refusal by MaxConns was last logged, busySince
	// how many were refused since: a flood logs a line every busyLogEvery.
	busyLogged time.Time
	busySince  int

	// formats caches what binlogFormat learnt of each archived file.
	fmtMu   sync.Mutex
	formats map[string]fileFormat
}

// busyLogEvery is the most often a refusal by MaxConns is logged.
const busyLogEvery = 10 * time.Second

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxConns         = 256
)

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.User == "" {
		return nil, errors.New("binlog server: a user is required")
	}
	if cfg.Password == "" {
		// An empty password would let anyone read the archive.
		return nil, errors.New("binlog server: a non-empty password is required")
	}
	if cfg.ServerID == 0 {
		return nil, errors.New("binlog server: a server_id is required")
	}
	if err := cfg.Stop.Validate(); err != nil {
		return nil, err
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics != nil {
		cfg.Metrics.init(cfg.Source)
	}
	return &Server{
		cfg:   cfg,
		log:   log.With("source", cfg.Source, "component", "binlog-server"),
		mysql: server.NewServer(Version, mysql.DEFAULT_COLLATION_ID, mysql.AUTH_NATIVE_PASSWORD, nil, cfg.TLS),
		conns: map[net.Conn]struct{}{},
		ready: make(chan struct{}),
	}, nil
}

// Addr returns the listening address once Serve runs.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.addr
}

// LastError returns the last error the server sent a replica and when, or
// "" if there was none.
func (s *Server) LastError() (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr, s.lastErrTime
}

// fail records an error sent to a replica: the log, the metrics and
// LastError. A damaged or unreadable archive is logged as an ERROR: it
// needs a human.
func (s *Server) fail(log *slog.Logger, fe *fatalError) {
	now := time.Now()
	s.mu.Lock()
	s.lastErr, s.lastErrTime = fe.msg, now
	s.mu.Unlock()
	if m := s.cfg.Metrics; m != nil {
		m.Errors.WithLabelValues(s.cfg.Source, fe.kind).Inc()
		m.LastError.WithLabelValues(s.cfg.Source).Set(float64(now.UnixNano()) / 1e9)
	}
	if fe.kind == KindCorrupt || fe.kind == KindRead {
		log.Error("stopped a replica: the archive cannot be served", "kind", fe.kind, "err", fe.msg)
		return
	}
	log.Warn("stopped a replica", "kind", fe.kind, "err", fe.msg)
}

// ListenAndServe listens on addr and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("binlog server for %s: listen %s: %w", s.cfg.Source, addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve accepts replicas on ln until ctx ends; it then closes every
// connection and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.addr = ln.Addr()
	close(s.ready)
	s.log.Info("serving the archive to replicas", "addr", ln.Addr().String(), "stop", s.cfg.Stop.String())
	go func() {
		<-ctx.Done()
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("binlog server for %s: accept: %w", s.cfg.Source, err)
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			// Accepted as the server stops: the closer may have gone
			// through s.conns already, and would not close this one.
			s.mu.Unlock()
			c.Close()
			return nil
		}
		if len(s.conns) >= s.cfg.MaxConns {
			s.mu.Unlock()
			s.refuseBusy(c)
			continue
		}
		s.conns[c] = struct{}{}
		s.countConns()
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.countConns()
				s.mu.Unlock()
				c.Close()
			}()
			s.serveConn(ctx, c)
		}()
	}
}

// countConns sets the connections gauge; s.mu is held, so that the last
// value set is the last count.
func (s *Server) countConns() {
	if m := s.cfg.Metrics; m != nil {
		m.Conns.WithLabelValues(s.cfg.Source).Set(float64(len(s.conns)))
	}
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	log := s.log.With("replica", c.RemoteAddr().String())
	auth := &authHandler{
		InMemoryAuthenticationHandler: server.NewInMemoryAuthenticationHandler(mysql.AUTH_NATIVE_PASSWORD),
		requireTLS:                    s.cfg.TLS != nil && !s.cfg.TLSOptional,
	}
	if err := auth.AddUser(s.cfg.User, s.cfg.Password); err != nil {
		log.Error("setting up authentication", "err", err.Error())
		return
	}
	sess := &session{srv: s, log: log, ctx: ctx, vars: map[string]string{}}
	// The deadline covers the TLS handshake too: tls.Conn uses c's.
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	c.SetDeadline(deadline)
	conn, err := s.mysql.NewCustomizedConn(c, auth, sess)
	if err != nil {
		s.refuseLogin(log, auth, err, !time.Now().Before(deadline))
		return
	}
	c.SetDeadline(time.Time{})
	sess.conn = conn
	for !conn.Closed() && !sess.done {
		if err := conn.HandleCommand(); err != nil {
			if !sess.done && ctx.Err() == nil {
				log.Debug("replica connection ended", "err", err.Error())
			}
			return
		}
	}
}

// authHandler checks a login: the password (go-mysql's in-memory handler)
// and, when TLS is required, that the client switched to TLS. It records
// why a login failed, for refuseLogin.
type authHandler struct {
	*server.InMemoryAuthenticationHandler
	requireTLS bool
	// user is the user of a failed login; reason is "login" (a wrong user
	// or password) or "tls" (no TLS where it is required).
	user, reason string
}

func (a *authHandler) OnAuthSuccess(c *server.Conn) error {
	if _, ok := c.Conn.Conn.(*tls.Conn); ok || !a.requireTLS {
		return nil
	}
	a.user, a.reason = c.GetUser(), ReasonTLS
	// ER_ACCESS_DENIED_ERROR: a replica retries, so it connects once the
	// replica is set to MASTER_SSL=1.
	return mysql.NewError(mysql.ER_ACCESS_DENIED_ERROR,
		"Access denied: this binlog server requires TLS (serve.tls); connect with TLS (a replica: MASTER_SSL=1; the mariadb client: --ssl)")
}

// GetCredential answers an unknown user as a wrong password (ERR 1045),
// as mariadbd does, rather than go-mysql's ERR 1449, which tells a
// stranger which user exists.
func (a *authHandler) GetCredential(user string) (server.Credential, bool, error) {
	cred, found, err := a.InMemoryAuthenticationHandler.GetCredential(user)
	if err != nil || found {
		return cred, found, err
	}
	return server.Credential{Passwords: []string{rand.Text()}, AuthPluginName: mysql.AUTH_NATIVE_PASSWORD}, true, nil
}

// OnAuthFailure is called for every error before a login completes; only
// ERR 1045 is a refused login.
func (a *authHandler) OnAuthFailure(c *server.Conn, err error) {
	var me *mysql.MyError
	if errors.As(err, &me) && me.Code == mysql.ER_ACCESS_DENIED_ERROR {
		a.user, a.reason = c.GetUser(), ReasonLogin
	}
}

// refuseLogin logs, in one line, and counts a connection that did not log
// in; timedOut: the handshake deadline passed (go-mysql's errors hide the
// net.Error). A refused login is a WARN; a client that went away or timed
// out before it tried is a DEBUG line (port scanners, TCP health checks).
func (s *Server) refuseLogin(log *slog.Logger, auth *authHandler, err error, timedOut bool) {
	reason := auth.reason
	switch {
	case reason != "":
	case timedOut:
		reason = ReasonTimeout
	default:
		reason = ReasonHandshake
	}
	if m := s.cfg.Metrics; m != nil {
		m.Refused.WithLabelValues(s.cfg.Source, reason).Inc()
	}
	// err.Error(), not err: go-mysql's errors print a stack trace with %+v,
	// which slog's text handler uses.
	switch reason {
	case ReasonLogin:
		log.Warn("replica login refused: wrong user or password", "user", auth.user, "err", oneLine(err))
	case ReasonTLS:
		log.Warn("replica login refused: TLS is required", "user", auth.user)
	case ReasonTimeout:
		log.Debug("connection closed: no login within the handshake timeout", "timeout", s.cfg.HandshakeTimeout.String())
	default:
		log.Debug("connection closed before login", "err", oneLine(err))
	}
}

// refuseBusy answers a connection beyond MaxConns with ERR 1040 and closes
// it.
func (s *Server) refuseBusy(c net.Conn) {
	msg := fmt.Sprintf("Too many connections (the binlog server of %s allows %d)", s.cfg.Source, s.cfg.MaxConns)
	// An error packet in place of the greeting, as mariadbd sends it:
	// header, 0xff, the code, the message.
	pkt := make([]byte, 4, 7+len(msg))
	code := uint16(mysql.ER_CON_COUNT_ERROR)
	pkt = append(pkt, 0xff, byte(code), byte(code>>8))
	pkt = append(pkt, msg...)
	n := len(pkt) - 4
	pkt[0], pkt[1], pkt[2], pkt[3] = byte(n), byte(n>>8), byte(n>>16), 0
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(pkt)
	c.Close()
	if m := s.cfg.Metrics; m != nil {
		m.Refused.WithLabelValues(s.cfg.Source, ReasonLimit).Inc()
	}
	now := time.Now()
	s.mu.Lock()
	s.busySince++
	n, logIt := s.busySince, now.Sub(s.busyLogged) >= busyLogEvery
	if logIt {
		s.busyLogged, s.busySince = now, 0
	}
	s.mu.Unlock()
	if logIt {
		s.log.Warn("refused connections: too many open", "max", s.cfg.MaxConns, "refused", n, "last", c.RemoteAddr().String())
	}
}

// oneLine is err's message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
