package binlogserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestNewRefusesEmptyPassword: an empty password would let anyone read the
// archive.
func TestNewRefusesEmptyPassword(t *testing.T) {
	_, err := New(Config{Source: "db", Dir: t.TempDir(), User: serveUser, ServerID: 9001})
	if err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("New with an empty password: %v, want an error naming the password", err)
	}
}

// TestTLSRequired: with TLS configured, a client without TLS is refused
// with a message that says TLS is required, and counted; a client with TLS
// logs in. With TLSOptional both log in.
func TestTLSRequired(t *testing.T) {
	cert := selfSigned(t)
	m := NewMetrics(prometheus.NewRegistry())
	log := &logBuffer{}
	addr := start(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Logger: log.logger(), Metrics: m})

	_, err := login(addr, servePassword, false)
	var me *mysql.MyError
	if !errors.As(err, &me) || me.Code != mysql.ER_ACCESS_DENIED_ERROR || !strings.Contains(me.Message, "requires TLS") {
		t.Fatalf("login without TLS: %v, want ERR 1045 saying TLS is required", err)
	}
	if got, err := login(addr, servePassword, true); err != nil {
		t.Fatalf("login with TLS: %v", err)
	} else if got == "" {
		t.Fatal("login with TLS: empty answer")
	}
	waitLog(t, log, "TLS is required", 1)
	if got := testutil.ToFloat64(m.Refused.WithLabelValues("db", ReasonTLS)); got != 1 {
		t.Fatalf("refused{reason=tls} %v, want 1", got)
	}

	optional := start(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, TLSOptional: true})
	for _, useTLS := range []bool{false, true} {
		if _, err := login(optional, servePassword, useTLS); err != nil {
			t.Fatalf("TLSOptional, login with TLS %v: %v", useTLS, err)
		}
	}
}

// TestHandshakeTimeoutAndLimit: connections that never log in are closed
// after the handshake timeout; beyond MaxConns a connection gets ERR 1040
// and is closed at once; both are counted, and a client logs in
// afterwards.
func TestHandshakeTimeoutAndLimit(t *testing.T) {
	const maxConns, timeout = 8, 700 * time.Millisecond
	m := NewMetrics(prometheus.NewRegistry())
	log := &logBuffer{}
	addr := start(t, Config{MaxConns: maxConns, HandshakeTimeout: timeout, Logger: log.logger(), Metrics: m})

	began := time.Now()
	var idle []net.Conn
	for i := 0; i < maxConns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// the greeting: the connection is accepted and counted
		if _, err := readPacket(c, 5*time.Second); err != nil {
			t.Fatalf("connection %d: no greeting: %v", i, err)
		}
		idle = append(idle, c)
	}
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		p, err := readPacket(c, 5*time.Second)
		if err != nil || len(p) < 3 || p[0] != 0xff || int(p[1])|int(p[2])<<8 != mysql.ER_CON_COUNT_ERROR {
			t.Fatalf("connection beyond the limit: %q, %v; want ERR 1040", p, err)
		}
		if _, err := readPacket(c, 5*time.Second); err != io.EOF {
			t.Fatalf("connection beyond the limit: after ERR 1040: %v, want EOF", err)
		}
	}
	if el := time.Since(began); el >= timeout {
		t.Fatalf("refusing beyond the limit took %v, want at once", el)
	}
	for i, c := range idle {
		if _, err := readPacket(c, 10*time.Second); err != io.EOF {
			t.Fatalf("idle connection %d: %v, want EOF after the handshake timeout", i, err)
		}
	}
	if el := time.Since(began); el < timeout || el > timeout+5*time.Second {
		t.Fatalf("idle connections closed after %v, want about %v", el, timeout)
	}
	for deadline := time.Now().Add(5 * time.Second); testutil.ToFloat64(m.Conns.WithLabelValues("db")) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("understudy_binlog_server_connections %v after every connection closed, want 0", testutil.ToFloat64(m.Conns.WithLabelValues("db")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := login(addr, servePassword, false); err != nil {
		t.Fatalf("login after the flood: %v", err)
	}
	if got := testutil.ToFloat64(m.Refused.WithLabelValues("db", ReasonLimit)); got != 3 {
		t.Fatalf("refused{reason=limit} %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.Refused.WithLabelValues("db", ReasonTimeout)); got != maxConns {
		t.Fatalf("refused{reason=timeout} %v, want %d", got, maxConns)
	}
	waitLog(t, log, "too many open", 1) // a flood logs one line per 10 s
	log.noStackTrace(t)
}

// TestWrongPasswordLogsOneLine: a wrong password and an unknown user both
// get ERR 1045 and one WARN line each; a client that closes before it
// logs in one DEBUG line; none with a stack trace.
func TestWrongPasswordLogsOneLine(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	log := &logBuffer{}
	addr := start(t, Config{Logger: log.logger(), Metrics: m})
	for _, c := range []struct{ user, password string }{{serveUser, "wrong"}, {"stranger", servePassword}} {
		_, err := client.Connect(addr, c.user, c.password, "")
		var me *mysql.MyError
		if !errors.As(err, &me) || me.Code != mysql.ER_ACCESS_DENIED_ERROR {
			t.Fatalf("login as %s/%s: %v, want ERR 1045", c.user, c.password, err)
		}
	}
	// a client that goes away before it logs in (a TCP health check)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readPacket(c, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitLog(t, log, "login refused", 2)
	waitLog(t, log, "connection closed before login", 1)
	log.noStackTrace(t)
	if got := testutil.ToFloat64(m.Refused.WithLabelValues("db", ReasonLogin)); got != 2 {
		t.Fatalf("refused{reason=login} %v, want 2", got)
	}
}

// start serves an empty archive with cfg (Source, Dir, User, Password and
// ServerID filled in) until the test ends, and returns its address.
func start(t *testing.T, cfg Config) string {
	t.Helper()
	cfg.Source, cfg.Dir, cfg.User, cfg.Password, cfg.ServerID = "db", t.TempDir(), serveUser, servePassword, 9001
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	return runServer(t, cfg).Addr().String()
}

// login logs in as serveUser and asks what a replica asks first.
func login(addr, password string, useTLS bool) (string, error) {
	var opts []client.Option
	if useTLS {
		opts = append(opts, func(c *client.Conn) error {
			c.SetTLSConfig(&tls.Config{InsecureSkipVerify: true})
			return nil
		})
	}
	c, err := client.ConnectWithTimeout(addr, serveUser, password, "", 5*time.Second, opts...)
	if err != nil {
		return "", err
	}
	defer c.Close()
	r, err := c.Execute("SELECT UNIX_TIMESTAMP()")
	if err != nil {
		return "", err
	}
	return r.GetString(0, 0)
}

// readPacket reads one protocol packet's payload; io.EOF when the server
// closed the connection.
func readPacket(c net.Conn, timeout time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		var ne net.Error
		if errors.As(err, &ne) && !ne.Timeout() || errors.Is(err, io.EOF) {
			return nil, io.EOF // a reset counts as closed
		}
		return nil, err
	}
	p := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
	_, err := io.ReadFull(c, p)
	return p, err
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "understudy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// logBuffer collects a server's log lines.
type logBuffer struct{ mariadbtest.LogBuffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// noStackTrace fails if a log line spans lines (go-mysql's errors print
// their stack trace with %+v).
func (l *logBuffer) noStackTrace(t *testing.T) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if !strings.HasPrefix(line, "time=") || strings.Contains(line, ".go:") {
			t.Fatalf("a log entry spans lines or holds a stack trace: %q\nlog:\n%s", line, l.String())
		}
	}
}

// waitLog waits until exactly n lines contain s.
func waitLog(t *testing.T, l *logBuffer, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := strings.Count(l.String(), s)
		if got == n {
			time.Sleep(100 * time.Millisecond)
			if got = strings.Count(l.String(), s); got == n {
				return
			}
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("%d log lines with %q, want %d:\n%s", got, s, n, l.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
