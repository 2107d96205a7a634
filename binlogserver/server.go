// Package binlogserver serves a source's archive to MariaDB replicas over
// the replication protocol: understudy acts as the primary. It speaks the
// conversation a MariaDB 10.x replica IO thread expects and streams whole
// transactions from the archive, tailing it live. docs/binlog-server.md
// describes the conversation.
package binlogserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	// TLS, if set, lets replicas use TLS.
	TLS *tls.Config
	// Stop, if set, holds every stream at a stop point: replicas catch up
	// to exactly that point and wait there.
	Stop understudy.StopPoint
	// Notify, if set, returns a channel closed when new transactions are
	// durable (the archive writer's). Without it the archive is polled.
	Notify func() <-chan struct{}
	// Poll is the polling interval without Notify (default 100ms).
	Poll   time.Duration
	Logger *slog.Logger
	// Metrics, if set, counts the errors sent to replicas.
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
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.User == "" {
		return nil, errors.New("binlog server: a user is required")
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
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serveConn(ctx, c)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	log := s.log.With("replica", c.RemoteAddr().String())
	auth := server.NewInMemoryAuthenticationHandler(mysql.AUTH_NATIVE_PASSWORD)
	if err := auth.AddUser(s.cfg.User, s.cfg.Password); err != nil {
		log.Error("setting up authentication", "err", err)
		return
	}
	sess := &session{srv: s, log: log, ctx: ctx, vars: map[string]string{}}
	conn, err := s.mysql.NewCustomizedConn(c, auth, sess)
	if err != nil {
		log.Warn("replica refused at login", "err", err)
		return
	}
	sess.conn = conn
	for !conn.Closed() && !sess.done {
		if err := conn.HandleCommand(); err != nil {
			if !sess.done && ctx.Err() == nil {
				log.Debug("replica connection ended", "err", err)
			}
			return
		}
	}
}
