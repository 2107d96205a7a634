// Package scratch starts a throwaway MariaDB server on this host, in a
// temporary directory, for work that needs a server holding a source at a
// point and nothing else: the reference of a replica check, a restore
// drill. It listens on 127.0.0.1 only, with a random root password, and is
// removed, data and all, when closed.
package scratch

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// ErrNotInstalled means mariadbd or mariadb-install-db is not on this
// host: a scratch server cannot be started, and one must be given.
var ErrNotInstalled = errors.New("MariaDB is not installed on this host")

// Server is a running scratch server.
type Server struct {
	Host     string // 127.0.0.1
	Port     int
	User     string // root
	Password string
	DataDir  string
	// ServerID is the server's server_id.
	ServerID uint32

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *slog.Logger
}

// Options configures Start.
type Options struct {
	// ServerID of the server; it must differ from the server_ids of the
	// transactions it will replicate (default 4000000021).
	ServerID uint32
	// BufferPool is innodb_buffer_pool_size (default 256M).
	BufferPool string
	// Dir is where the temporary directory is made (default os.TempDir()).
	Dir string
	Log *slog.Logger
}

// Find returns the paths of mariadbd and mariadb-install-db, or
// ErrNotInstalled.
func Find() (mariadbd, installDB string, err error) {
	look := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"} {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
		return ""
	}
	mariadbd, installDB = look("mariadbd"), look("mariadb-install-db")
	if mariadbd == "" || installDB == "" {
		return "", "", fmt.Errorf("%w: mariadbd and mariadb-install-db are needed for a scratch server (on Debian: apt-get install mariadb-server)", ErrNotInstalled)
	}
	return mariadbd, installDB, nil
}

// Start installs and starts a scratch server, and waits until it answers.
func Start(ctx context.Context, o Options) (*Server, error) {
	mariadbd, installDB, err := Find()
	if err != nil {
		return nil, err
	}
	if o.ServerID == 0 {
		o.ServerID = 4000000021
	}
	if o.BufferPool == "" {
		o.BufferPool = "256M"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp(o.Dir, "understudy-scratch-")
	if err != nil {
		return nil, fmt.Errorf("scratch server: %w", err)
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	s := &Server{Host: "127.0.0.1", User: "root", Password: hex.EncodeToString(pw), DataDir: filepath.Join(dir, "data"), ServerID: o.ServerID, dir: dir, log: o.Log}
	fail := func(err error) (*Server, error) {
		s.Close()
		return nil, fmt.Errorf("scratch server in %s: %w", dir, err)
	}
	osUser := "root"
	if u, err := user.Current(); err == nil && u.Username != "" {
		osUser = u.Username
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fail(err)
	}
	// root over TCP from 127.0.0.1 with the random password, and nothing
	// else: no test database, no anonymous account. (The install runs
	// without grant tables: the account is written into them.)
	init := filepath.Join(dir, "init.sql")
	if err := os.WriteFile(init, []byte("REPLACE INTO mysql.global_priv VALUES ('127.0.0.1', 'root', CONCAT('{\"access\":18446744073709551615,\"plugin\":\"mysql_native_password\",\"authentication_string\":\"', PASSWORD('"+s.Password+"'), '\"}'));\n"), 0o600); err != nil {
		return fail(err)
	}
	out, err := exec.CommandContext(ctx, installDB, "--no-defaults", "--datadir="+s.DataDir, "--user="+osUser, "--tmpdir="+tmp,
		"--skip-test-db", "--auth-root-authentication-method=socket", "--extra-file="+init).CombinedOutput()
	if err != nil {
		return fail(fmt.Errorf("mariadb-install-db: %v: %s", err, lastLine(string(out))))
	}
	for try := 0; try < 3; try++ {
		if s.Port, err = freePort(); err != nil {
			return fail(err)
		}
		if err = s.boot(ctx, mariadbd, osUser, o); err == nil {
			o.Log.Info("scratch server started", "addr", s.Addr(), "dir", dir)
			return s, nil
		}
		// Another process took the free port between the probe and the
		// bind: try another one.
		b, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
		if !strings.Contains(string(b), "Address already in use") && !strings.Contains(string(b), "Bind on TCP/IP port") {
			break
		}
		os.Remove(filepath.Join(s.dir, "error.log"))
	}
	return fail(err)
}

func (s *Server) boot(ctx context.Context, mariadbd, osUser string, o Options) error {
	args := []string{"--no-defaults", "--user=" + osUser, "--datadir=" + s.DataDir, "--tmpdir=" + filepath.Join(s.dir, "tmp"),
		"--socket=" + filepath.Join(s.dir, "mysqld.sock"), "--port=" + strconv.Itoa(s.Port), "--bind-address=127.0.0.1",
		"--pid-file=" + filepath.Join(s.dir, "mysqld.pid"), "--log-error=" + filepath.Join(s.dir, "error.log"),
		"--relay-log=" + filepath.Join(s.dir, "relay-bin"), "--server-id=" + strconv.FormatUint(uint64(s.ServerID), 10),
		"--skip-log-bin", "--skip-name-resolve", "--innodb-buffer-pool-size=" + o.BufferPool,
		"--innodb-flush-log-at-trx-commit=2", "--max-allowed-packet=1G", "--local-infile=1"}
	s.cmd = exec.Command(mariadbd, args...)
	// Its own process group (a terminal's ^C goes to understudy, which
	// closes it), and killed if understudy dies first.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	db, err := s.Open()
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := db.PingContext(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("mariadbd exited at startup: %s", s.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mariadbd not ready after 60s: %v: %s", err, s.logTail())
		}
	}
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Open opens a connection pool to the server as root.
func (s *Server) Open() (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = s.User, s.Password, "tcp", s.Addr()
	cfg.Timeout = 5 * time.Second
	cfg.InterpolateParams = true
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	return os.RemoveAll(s.dir)
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
	return lastLine(string(b))
}

// lastLine is the line of a server's log that says why it failed: its
// first ERROR other than the final "Aborting", else its last line.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.Contains(l, "ERROR") && !strings.HasSuffix(strings.TrimSpace(l), "Aborting") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
