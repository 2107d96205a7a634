// Package mariadbtest starts real, throwaway mariadbd servers for integration
// tests. Each server listens on 127.0.0.1 on a free port and keeps its data
// in a fresh temporary directory that is removed when the test ends.
//
// The system tables are created once per test process by mariadb-install-db
// into a template directory, which every Start copies. MariaDB must be
// installed (on Debian: apt-get install -y mariadb-server); when it is not,
// Start fails the test rather than skipping it.
//
// The package is Linux-only: servers are started in their own process group
// with a parent-death signal so that they do not outlive the test binary.
package mariadbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers the "mysql" driver
)

const (
	readyTimeout = 30 * time.Second // startup, including crash recovery
	stopTimeout  = 60 * time.Second // graceful shutdown before SIGKILL
	startTries   = 3                // attempts with fresh ports in Start
	dirPrefix    = "understudy-mariadbtest-"
	installHint  = "install MariaDB with `apt-get install -y mariadb-server`"
)

// Options configures a server started by Start. The zero value is a binlogging
// server with server_id 1, gtid_domain_id 0 and binlog_format ROW.
type Options struct {
	ServerID     uint32   // server_id; 0 means 1
	DomainID     uint32   // gtid_domain_id
	NoBinlog     bool     // disable the binary log (default: log_bin=<datadir>/mariadb-bin)
	BinlogFormat string   // binlog_format; "" means "ROW"
	SemiSync     bool     // rpl_semi_sync_master_enabled=ON with a 10 s timeout
	Args         []string // extra mariadbd arguments, appended last, e.g. "--max-binlog-size=4096"
	// Stock installs the server the way a user does: mariadb-install-db
	// with its defaults, so it has the empty `test` database (and root
	// authenticates by unix socket). Only an account root@127.0.0.1 without
	// a password is added, for the tests' connections.
	Stock bool
}

// Server is a running (or stopped) mariadbd started by Start. Its methods are
// meant to be called from the test goroutine; DB, Exec and QueryString may
// also be used concurrently.
type Server struct {
	Host    string // always "127.0.0.1"
	Port    int
	DataDir string // also holds error.log and stdout.log
	Opts    Options

	bin      string   // path of mariadbd
	tmpDir   string   // the server's --tmpdir
	proc     *process // latest mariadbd process; nil before the first start
	logShown bool     // a failure message already included error.log

	mu sync.Mutex // guards db
	db *sql.DB
}

// process is one mariadbd run; done is closed once it has exited and err is
// then the result of Wait.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

var errPortInUse = errors.New("port already in use")

// Start starts a fresh server and registers a cleanup that kills it and removes
// its data directory. It fails the test if MariaDB is not installed or the
// server does not become ready.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.ServerID == 0 {
		opts.ServerID = 1
	}
	if opts.BinlogFormat == "" {
		opts.BinlogFormat = "ROW"
	}
	bin, err := lookBin("mariadbd")
	if err != nil {
		tb.Fatal(err)
	}
	tmpl, built, err := templateDir(opts.Stock)
	if err != nil {
		tb.Fatalf("mariadbtest: %v", err)
	}
	if built > 0 {
		tb.Logf("mariadbtest: built template datadir %s in %v", tmpl, built.Round(time.Millisecond))
	}

	began := time.Now()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-srv-", dirPrefix, os.Getpid()))
	if err != nil {
		tb.Fatalf("mariadbtest: %v", err)
	}
	s := &Server{Host: "127.0.0.1", DataDir: dir, Opts: opts, bin: bin}
	// A tmpdir of its own: servers and installs running at once must not
	// share temporary file names in /tmp.
	s.tmpDir = dir + "-tmp"
	if err := os.MkdirAll(s.tmpDir, 0o755); err != nil {
		tb.Fatalf("mariadbtest: %v", err)
	}
	tb.Cleanup(func() {
		s.closeDB()
		s.kill()
		if tb.Failed() && !s.logShown {
			tb.Logf("mariadbtest: tail of %s/error.log (port %d):\n%s", dir, s.Port, s.logTail(0))
		}
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("mariadbtest: removing %s: %v", dir, err)
		}
		os.RemoveAll(s.tmpDir)
	})
	if err := os.CopyFS(dir, os.DirFS(tmpl)); err != nil {
		tb.Fatalf("mariadbtest: copying template datadir: %v", err)
	}
	for try := 1; ; try++ {
		if s.Port, err = freePort(); err != nil {
			tb.Fatalf("mariadbtest: %v", err)
		}
		if err = s.boot(); err == nil {
			break
		}
		if try == startTries || !errors.Is(err, errPortInUse) {
			tb.Fatalf("mariadbtest: %v", err)
		}
	}
	tb.Logf("mariadbtest: mariadbd ready on %s:%d in %v (datadir %s)",
		s.Host, s.Port, time.Since(began).Round(time.Millisecond), dir)
	return s
}

// DSN returns a go-sql-driver DSN for root (no password) on database db,
// which may be empty.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("root@tcp(%s:%d)/%s?multiStatements=true&interpolateParams=true", s.Host, s.Port, db)
}

// DB returns a connection pool to the server with no default database. It is
// opened on first use and closed when the test that called Start ends; it
// stays usable across Kill, Stop and Restart.
func (s *Server) DB(tb testing.TB) *sql.DB {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		db, err := sql.Open("mysql", s.DSN(""))
		if err != nil {
			tb.Fatalf("mariadbtest: opening %s: %v", s.DSN(""), err)
		}
		s.db = db
	}
	return s.db
}

// Exec runs query (which may hold several statements when args is empty) and
// fails the test on error.
func (s *Server) Exec(tb testing.TB, query string, args ...any) {
	tb.Helper()
	if _, err := s.DB(tb).Exec(query, args...); err != nil {
		tb.Fatalf("mariadbtest: port %d: exec %q: %v", s.Port, query, err)
	}
}

// QueryString runs a query returning one row with one column and returns
// that value as a string, with NULL as "". No rows fails the test.
func (s *Server) QueryString(tb testing.TB, query string, args ...any) string {
	tb.Helper()
	var v sql.NullString
	if err := s.DB(tb).QueryRow(query, args...).Scan(&v); err != nil {
		tb.Fatalf("mariadbtest: port %d: query %q: %v", s.Port, query, err)
	}
	return v.String
}

// Kill sends SIGKILL to the server and waits for it to exit, leaving the data
// directory as after a crash. It is a no-op if the server is not running.
func (s *Server) Kill(tb testing.TB) {
	tb.Helper()
	s.dropIdleConns()
	s.kill()
}

// Stop shuts the server down gracefully with SIGTERM and waits for it to exit.
// It is a no-op if the server is not running.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if !s.running() {
		return
	}
	s.dropIdleConns()
	s.signal(syscall.SIGTERM)
	select {
	case <-s.proc.done:
	case <-time.After(stopTimeout):
		s.kill()
		tb.Fatalf("mariadbtest: mariadbd on port %d did not stop within %v; killed it", s.Port, stopTimeout)
	}
}

// Restart starts the server again on the same data directory and port and
// waits until it is ready. A server that is still running is stopped first.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop(tb)
	if err := s.boot(); err != nil {
		tb.Fatalf("mariadbtest: restart: %v", err)
	}
}

// CreateUser creates user@'%' identified by password and grants it each of
// grants, e.g. "REPLICATION SLAVE ON *.*" or "ALL ON db.*".
func (s *Server) CreateUser(tb testing.TB, user, password string, grants ...string) {
	tb.Helper()
	s.Exec(tb, "CREATE USER ?@'%' IDENTIFIED BY ?", user, password)
	for _, g := range grants {
		s.Exec(tb, "GRANT "+g+" TO ?@'%'", user)
	}
}

// SameChecksums fails tb unless got (a copy's Checksums) has exactly the
// tables and sequences of want (the source's), each with its checksum;
// want must not be empty. what names the copy in the message.
func SameChecksums(tb testing.TB, what string, want, got map[string]string) {
	tb.Helper()
	if len(want) == 0 {
		tb.Fatalf("%s: no tables to compare", what)
	}
	for k, v := range want {
		if got[k] != v {
			tb.Fatalf("%s: %s checksum %q, the source's %q (copy %v, source %v)", what, k, got[k], v, got, want)
		}
	}
	if len(got) != len(want) {
		tb.Fatalf("%s: tables %v, the source's %v", what, got, want)
	}
}

// Checksums returns a checksum of every table and sequence in the given
// databases, keyed by "db.table". A missing database contributes nothing.
// A base table's is its CHECKSUM TABLE result. A system-versioned table's
// covers every row, its history included, with its ROW START and ROW END
// (the current rows only when its periods are transaction IDs, which no
// other server shares). A sequence's is its state: next_not_cached_value,
// minimum_value, maximum_value, start_value, increment, cache_size,
// cycle_option and cycle_count.
func (s *Server) Checksums(tb testing.TB, databases ...string) map[string]string {
	tb.Helper()
	db := s.DB(tb)
	sums := make(map[string]string)
	for _, schema := range databases {
		var tables, types []string
		rows, err := db.Query(`SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES
			WHERE TABLE_SCHEMA = ? AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE')`, schema)
		for err == nil && rows.Next() {
			var name, typ string
			err = rows.Scan(&name, &typ)
			tables, types = append(tables, name), append(types, typ)
		}
		if rows != nil {
			rows.Close()
			err = errors.Join(err, rows.Err())
		}
		if err != nil {
			tb.Fatalf("mariadbtest: port %d: listing tables of %s: %v", s.Port, schema, err)
		}
		for i, table := range tables {
			qt := quoteIdent(schema) + "." + quoteIdent(table)
			switch types[i] {
			case "SEQUENCE":
				sums[schema+"."+table] = "sequence " + s.QueryString(tb, "SELECT CONCAT_WS(' ', next_not_cached_value, minimum_value, maximum_value, start_value, increment, cache_size, cycle_option, cycle_count) FROM "+qt)
				continue
			case "SYSTEM VERSIONED":
				sums[schema+"."+table] = s.versionedChecksum(tb, schema, table)
				continue
			}
			q := "CHECKSUM TABLE " + qt
			var name string
			var sum sql.NullString
			if err := db.QueryRow(q).Scan(&name, &sum); err != nil {
				tb.Fatalf("mariadbtest: port %d: %s: %v", s.Port, q, err)
			}
			sums[schema+"."+table] = sum.String
		}
	}
	return sums
}

// versionedChecksum returns the row count and a checksum of every row of a
// system-versioned table, history included (FOR SYSTEM_TIME ALL), with
// its periods in UTC; of its current rows without its periods when they
// are transaction IDs.
func (s *Server) versionedChecksum(tb testing.TB, schema, table string) string {
	tb.Helper()
	ctx := context.Background()
	c, err := s.DB(tb).Conn(ctx)
	if err != nil {
		tb.Fatalf("mariadbtest: port %d: %v", s.Port, err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, "SET SESSION time_zone = '+00:00'"); err != nil {
		tb.Fatalf("mariadbtest: port %d: %v", s.Port, err)
	}
	var cols []string
	explicit, trx := false, false
	rows, err := c.QueryContext(ctx, `SELECT COLUMN_NAME, COALESCE(GENERATION_EXPRESSION, ''), DATA_TYPE FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, schema, table)
	for err == nil && rows.Next() {
		var name, gen, typ string
		if err = rows.Scan(&name, &gen, &typ); err != nil {
			break
		}
		if gen == "ROW START" || gen == "ROW END" {
			explicit = true
			if typ != "timestamp" {
				trx = true
				continue
			}
		}
		cols = append(cols, quoteIdent(name))
	}
	if rows != nil {
		rows.Close()
		err = errors.Join(err, rows.Err())
	}
	if err != nil {
		tb.Fatalf("mariadbtest: port %d: columns of %s.%s: %v", s.Port, schema, table, err)
	}
	from := quoteIdent(schema) + "." + quoteIdent(table)
	if !trx {
		from += " FOR SYSTEM_TIME ALL"
		if !explicit {
			cols = append(cols, "`row_start`", "`row_end`")
		}
	}
	var vals, nulls []string
	for _, c := range cols {
		vals = append(vals, "CAST("+c+" AS BINARY)")
		nulls = append(nulls, "ISNULL("+c+")")
	}
	e := fmt.Sprintf("CONCAT_WS('#', %s, CONCAT(%s))", strings.Join(vals, ", "), strings.Join(nulls, ", "))
	q := fmt.Sprintf("SELECT CONCAT('versioned ', COUNT(*), ' ', COALESCE(BIT_XOR((CRC32(%s) << 32) | CRC32C(%s)), 0)) FROM %s", e, e, from)
	var sum string
	if err := c.QueryRowContext(ctx, q).Scan(&sum); err != nil {
		tb.Fatalf("mariadbtest: port %d: %s: %v", s.Port, q, err)
	}
	return sum
}

// GTIDBinlogPos returns @@global.gtid_binlog_pos, e.g. "0-1-42".
func (s *Server) GTIDBinlogPos(tb testing.TB) string {
	tb.Helper()
	return s.QueryString(tb, "SELECT @@global.gtid_binlog_pos")
}

// args returns the mariadbd command line for the server's current port.
func (s *Server) args() []string {
	d, o := s.DataDir, s.Opts
	args := []string{
		"--no-defaults",
		"--user=" + osUser(),
		"--datadir=" + d,
		"--tmpdir=" + s.tmpDir,
		"--socket=" + filepath.Join(d, "mysqld.sock"),
		"--port=" + strconv.Itoa(s.Port),
		"--bind-address=" + s.Host,
		"--pid-file=" + filepath.Join(d, "mysqld.pid"),
		"--log-error=" + filepath.Join(d, "error.log"),
		"--relay-log=" + filepath.Join(d, "mariadb-relay-bin"),
		fmt.Sprintf("--server-id=%d", o.ServerID),
		fmt.Sprintf("--gtid-domain-id=%d", o.DomainID),
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=48M",
		"--innodb-flush-log-at-trx-commit=2",
		"--sync-binlog=0",
		"--skip-name-resolve",
		"--max-allowed-packet=1G",
	}
	if o.NoBinlog {
		args = append(args, "--skip-log-bin")
	} else {
		args = append(args, "--log-bin="+filepath.Join(d, "mariadb-bin"), "--binlog-format="+o.BinlogFormat)
	}
	if o.SemiSync {
		args = append(args, "--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-master-timeout=10000")
	}
	return append(args, o.Args...)
}

// boot launches mariadbd and waits until it answers over TCP. On failure the
// process is killed and the error carries the new part of error.log; it
// wraps errPortInUse when the port was taken.
func (s *Server) boot() error {
	logStart := fileSize(filepath.Join(s.DataDir, "error.log"))
	out, err := os.OpenFile(filepath.Join(s.DataDir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so that a terminal's SIGINT goes to the test binary
	// only; Pdeathsig kills the server if the test binary dies without
	// running its cleanups. (Pdeathsig tracks the forking OS thread, which
	// Go only retires for goroutines that exit while locked to a thread.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	out.Close()
	if err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p

	if err = s.waitReady(p); err == nil {
		return nil
	}
	s.kill()
	s.logShown = true
	tail := s.logTail(logStart)
	if strings.Contains(tail, "Address already in use") {
		err = fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return fmt.Errorf("mariadbd on port %d (datadir %s): %w\n--- error.log ---\n%s", s.Port, s.DataDir, err, tail)
}

// waitReady pings the server until it answers, p exits or readyTimeout passes.
func (s *Server) waitReady(p *process) error {
	db, err := sql.Open("mysql", s.DSN("")+"&timeout=1s")
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", readyTimeout, err)
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited during startup: %v", p.err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (s *Server) running() bool {
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}

// Pause stops the server with SIGSTOP: its connections stay open but
// silent, as behind a network partition. Resume continues it.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	s.signal(syscall.SIGSTOP)
}

// Resume continues a paused server.
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	s.signal(syscall.SIGCONT)
}

// signal sends sig to the server's process group.
func (s *Server) signal(sig syscall.Signal) {
	_ = syscall.Kill(-s.proc.cmd.Process.Pid, sig)
}

// kill SIGKILLs the server, if running, and waits for it to exit.
func (s *Server) kill() {
	if !s.running() {
		return
	}
	s.signal(syscall.SIGKILL)
	<-s.proc.done
}

// dropIdleConns closes the pool's idle connections while the server is still
// up, so that they are not found dead (and logged by the driver) after a
// restart.
func (s *Server) dropIdleConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		s.db.SetMaxIdleConns(0)
		s.db.SetMaxIdleConns(2) // database/sql's default
	}
}

func (s *Server) closeDB() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
}

// logTail returns the last few KiB of error.log written at or after offset.
func (s *Server) logTail(offset int64) string {
	b, err := os.ReadFile(filepath.Join(s.DataDir, "error.log"))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	const max = 8 << 10
	b = b[min(int(offset), len(b)):]
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

type templateOnce struct {
	once sync.Once
	dir  string
	err  error
}

// templates are the template datadirs: [0] for the tests' servers,
// [1] for Options.Stock.
var templates [2]templateOnce

// templateDir returns the template datadir, building it on first use; built
// is how long that took when this call built it, otherwise 0.
func templateDir(stock bool) (dir string, built time.Duration, err error) {
	t := &templates[0]
	if stock {
		t = &templates[1]
	}
	t.once.Do(func() {
		began := time.Now()
		t.dir, t.err = buildTemplate(stock)
		built = time.Since(began)
	})
	return t.dir, built, t.err
}

// buildTemplate runs mariadb-install-db into a directory named after this
// process. The directory outlives the process; the next build removes those
// left by processes that are gone. Unless stock, root has no password and
// there is no `test` database.
func buildTemplate(stock bool) (string, error) {
	installDB, err := lookBin("mariadb-install-db")
	if err != nil {
		return "", err
	}
	removeStale()
	name := "template"
	if stock {
		name = "stock-template"
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("%s%d-%s", dirPrefix, os.Getpid(), name))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	tmp := dir + "-tmp"
	defer os.RemoveAll(tmp)
	var out []byte
	for try := 1; try <= 2; try++ {
		os.RemoveAll(dir)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return "", err
		}
		args := []string{"--no-defaults", "--datadir=" + dir, "--user=" + osUser(), "--tmpdir=" + tmp,
			"--innodb-log-file-size=48M"} // same redo log size as the servers, avoiding a resize
		if stock {
			// As a user installs: the defaults, with the `test` database
			// and root by unix socket; plus root over TCP for the tests,
			// with the privileges the install gives root.
			extra := filepath.Join(tmp, "tcp-root.sql")
			sql := "REPLACE INTO mysql.global_priv VALUES ('127.0.0.1', 'root', '{\"access\":18446744073709551615}');\n"
			if err := os.WriteFile(extra, []byte(sql), 0o644); err != nil {
				return "", err
			}
			args = append(args, "--extra-file="+extra)
		} else {
			args = append(args, "--auth-root-authentication-method=normal", "--skip-test-db")
		}
		cmd := exec.Command(installDB, args...)
		if out, err = cmd.CombinedOutput(); err == nil {
			return dir, nil
		}
		err = fmt.Errorf("%s failed: %v\n%s", cmd, err, out)
	}
	os.RemoveAll(dir)
	return "", err
}

// removeStale removes directories under os.TempDir() created by this package
// in processes that no longer exist.
func removeStale() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, m := range matches {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(m), dirPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(m)
		}
	}
}

// lookBin finds a MariaDB program in PATH or the usual sbin/bin directories.
func lookBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: %s", name, installHint)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func fileSize(name string) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func quoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// osUser is the user the servers run as: root in CI, or whoever runs the
// tests (mariadbd refuses root only when it is not told so).
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "root"
}
