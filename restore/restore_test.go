package restore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/labtest"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/replica"
	"github.com/understudy-db/understudy/snapshot"
)

func logger(t *testing.T) *slog.Logger { return mariadbtest.Logger(t, slog.LevelWarn) }

func startPrimary(t *testing.T, o mariadbtest.Options) *mariadbtest.Server {
	return labtest.StartPrimary(t, o)
}

// archiveSource archives p as source "db" into dir until the returned
// function is called, which first waits until the archive holds p's
// gtid_binlog_pos.
func archiveSource(t *testing.T, p *mariadbtest.Server, dir string) (stop func()) {
	return labtest.Archive(t, labtest.Source(p, "db", 9100), dir, p, logger(t))
}

func takeSnapshot(t *testing.T, p *mariadbtest.Server, root string) *snapshot.Manifest {
	return labtest.TakeSnapshot(t, p, "db", root, 0)
}

func options(t *testing.T, dir string, target *mariadbtest.Server) Options {
	return Options{Source: "db", ArchiveDir: dir, SnapshotRoot: filepath.Join(dir, "snapshots"), Target: target.DB(t),
		TargetAddr: fmt.Sprintf("127.0.0.1:%d", target.Port), Threads: 2, Log: logger(t)}
}

func checksumsEqual(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	mariadbtest.SameChecksums(t, what, want, got)
}

func oneLine(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one about %q", want)
	}
	if msg := err.Error(); !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
		t.Fatalf("error %q; want one line about %q", msg, want)
	}
	t.Log(err)
}

// TestRestoreSnapshotWithoutBinlogs restores from a source that has a
// snapshot and no archived binlog at all (a snapshot taken before
// `understudy run` ever ran): to the snapshot's own position it works and
// is verified; any later point, or the end of an archive that holds
// nothing, is refused in one line before the target is touched.
func TestRestoreSnapshotWithoutBinlogs(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, DomainID: 1})
	p.Exec(t, "CREATE DATABASE a")
	p.Exec(t, "CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(10))")
	p.Exec(t, "INSERT INTO a.t SELECT seq, CONCAT('v', seq) FROM a.seq_1_to_100")
	// An event the source runs: restored DISABLE ON SLAVE, and named.
	p.Exec(t, "CREATE EVENT a.purge ON SCHEDULE EVERY 1 HOUR DO DELETE FROM a.t WHERE id > 1000000")
	dir := t.TempDir()
	m := takeSnapshot(t, p, filepath.Join(dir, "snapshots"))
	want := p.Checksums(t, "a")
	p.Exec(t, "INSERT INTO a.t VALUES (1000, 'later')")
	later, _ := understudy.ParsePosition(p.GTIDBinlogPos(t))
	if files, _ := filepath.Glob(filepath.Join(dir, "binlog.*")); len(files) != 0 {
		t.Fatalf("the archive has files: %v", files)
	}

	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
	for _, tc := range []struct {
		name string
		stop understudy.StopPoint
		id   string
		want string
	}{
		{"later GTID", understudy.StopPoint{UntilGTID: later}, "", "is outside every restore window of source db"},
		{"later GTID from the snapshot", understudy.StopPoint{UntilGTID: later}, m.ID, "is outside every restore window of source db"},
		{"before a later GTID", understudy.StopPoint{BeforeGTID: later.GTIDs()[0]}, "", "is outside every restore window of source db"},
		{"later time", understudy.StopPoint{UntilTime: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}, "", "is outside every restore window of source db"},
		{"the end", understudy.StopPoint{}, "", "nothing is archived after any snapshot"},
	} {
		o := options(t, dir, target)
		o.Stop, o.SnapshotID = tc.stop, tc.id
		_, err := Run(ctx, o)
		oneLine(t, err, tc.want)
		if !strings.Contains(err.Error(), m.ID) {
			t.Fatalf("%s: the refusal does not name the snapshot %s: %v", tc.name, m.ID, err)
		}
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'a'"); got != "0" {
		t.Fatalf("a refused restore wrote to the target")
	}

	for _, tc := range []struct {
		name string
		stop understudy.StopPoint
		id   string
	}{
		{"until the snapshot's GTID position", understudy.StopPoint{UntilGTID: m.Position}, ""},
		{"from the snapshot, no point", understudy.StopPoint{}, m.ID},
	} {
		o := options(t, dir, target)
		o.Stop, o.SnapshotID, o.Force = tc.stop, tc.id, true
		res, err := Run(ctx, o)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if res.Verified <= 0 || !res.Position.Equal(m.Position) || res.Transactions != 0 {
			t.Fatalf("%s: %+v; want the snapshot's position %s, verified", tc.name, res, m.Position)
		}
		if len(res.DisabledEvents) != 1 || res.DisabledEvents[0] != "a.purge" {
			t.Fatalf("%s: events disabled on the target %v, want [a.purge]", tc.name, res.DisabledEvents)
		}
		checksumsEqual(t, tc.name, want, target.Checksums(t, "a"))
		if got := target.QueryString(t, "SELECT @@gtid_slave_pos"); got != m.Position.String() {
			t.Fatalf("%s: gtid_slave_pos %s, want %s", tc.name, got, m.Position)
		}
	}
}

// source is an archived primary in GTID domain 1, installed as a user
// installs MariaDB (with the empty `test` database, which its snapshot
// holds), with a snapshot and, after it, changes made across databases:
// DDL and DML on `a` issued while `b` is the default database, changes to
// `b` and a new database `c` issued while `a` is, and DROP DATABASE b.
type source struct {
	p   *mariadbtest.Server
	dir string
	m   *snapshot.Manifest
	// final holds the primary's checksums at the end, of a.
	final map[string]string
}

func newSource(t *testing.T) source {
	t.Helper()
	p := startPrimary(t, mariadbtest.Options{ServerID: 1, DomainID: 1, Stock: true})
	if got := p.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test'"); got != "1" {
		t.Fatalf("a stock install has no test database")
	}
	dir := t.TempDir()
	stop := archiveSource(t, p, dir)
	p.Exec(t, "CREATE DATABASE a")
	p.Exec(t, "CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(10))")
	p.Exec(t, "INSERT INTO a.t SELECT seq, CONCAT('v', seq) FROM a.seq_1_to_50")
	p.Exec(t, "CREATE DATABASE b")
	p.Exec(t, "CREATE TABLE b.u (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO b.u VALUES (1)")
	m := takeSnapshot(t, p, filepath.Join(dir, "snapshots"))

	c, err := p.DB(t).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, q := range []string{
		"USE b",
		"SET SESSION binlog_format = 'STATEMENT'",
		"INSERT INTO a.t VALUES (101, 'stmt')",
		"SET SESSION binlog_format = 'ROW'",
		"CREATE TABLE a.t2 (id INT PRIMARY KEY, v VARCHAR(10))",
		"INSERT INTO a.t2 VALUES (1, 'x'), (2, 'y')",
		"INSERT INTO a.t VALUES (102, 'row')",
		"ALTER TABLE a.t ADD COLUMN w INT DEFAULT 7",
		"INSERT INTO b.u VALUES (2)",
		"CREATE TABLE b.u2 (id INT)",
		"CREATE PROCEDURE a.pa() SELECT 1",
		"USE a",
		"CREATE PROCEDURE b.pb() SELECT 2",
		"INSERT INTO b.u VALUES (3)",
		"CREATE TABLE b.u3 (id INT)",
		"CREATE DATABASE c",
		"CREATE TABLE c.x (id INT)",
		"CREATE OR REPLACE PROCEDURE c.pc() SELECT 3", // replayable again: the restore-again cases
		"INSERT INTO c.x VALUES (1)",
		"DROP DATABASE b",
		"INSERT INTO t VALUES (103, 'last', 8)",
	} {
		if _, err := c.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("primary: %s: %v", q, err)
		}
	}
	stop()
	return source{p: p, dir: dir, m: m, final: p.Checksums(t, "a")}
}

func TestRestoreInto(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	end, _ := understudy.ParsePosition(src.p.GTIDBinlogPos(t))

	// A stock target, like the primary: its empty `test` database is no
	// conflict, a database with something in it is.
	t.Run("stock target", func(t *testing.T) {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true, Stock: true})
		target.Exec(t, "CREATE DATABASE b")
		target.Exec(t, "CREATE PROCEDURE b.p() BEGIN END")
		o := options(t, src.dir, target)
		_, err := Run(ctx, o)
		oneLine(t, err, "target "+o.TargetAddr+" already has databases b: restore refuses to overwrite them without --force")
		target.Exec(t, "DROP PROCEDURE b.p") // b is empty now, like test
		res, err := Run(ctx, o)
		if err != nil {
			t.Fatalf("restore into a stock target: %v", err)
		}
		if !res.Position.Equal(end) {
			t.Fatalf("restored to %s, want %s", res.Position, end)
		}
		checksumsEqual(t, "a", src.final, target.Checksums(t, "a"))
		for db, want := range map[string]string{"test": "1", "b": "0", "c": "1"} {
			if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", db); got != want {
				t.Fatalf("database %s: %s, want %s", db, got, want)
			}
		}
	})

	// A target that replicates another primary, in domain 2, over a
	// connection of its own: restore changes domain 1 of its
	// gtid_slave_pos only, and the other connection keeps replicating.
	t.Run("multi-source target", func(t *testing.T) {
		q := startPrimary(t, mariadbtest.Options{ServerID: 2, DomainID: 2})
		q.Exec(t, "CREATE DATABASE o")
		q.Exec(t, "CREATE TABLE o.t (id INT PRIMARY KEY)")
		q.Exec(t, "INSERT INTO o.t VALUES (1), (2)")
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		target.Exec(t, fmt.Sprintf("CHANGE MASTER 'other' TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
			q.Port, labtest.ReplUser, labtest.ReplPassword))
		target.Exec(t, "START SLAVE 'other'")
		caughtUp := func() {
			t.Helper()
			want := q.GTIDBinlogPos(t)
			mariadbtest.Eventually(t, "the target to replicate "+want+" from the other primary", 30*time.Second, func() bool {
				p, err := understudy.ParsePosition(target.QueryString(t, "SELECT @@gtid_slave_pos"))
				w, _ := understudy.ParsePosition(want)
				return err == nil && p.ContainsPosition(w)
			})
		}
		caughtUp()
		otherBefore := q.Checksums(t, "o")

		o := options(t, src.dir, target)
		res, err := Run(ctx, o)
		if err != nil {
			t.Fatalf("restore into a multi-source replica: %v", err)
		}
		checksumsEqual(t, "a", src.final, target.Checksums(t, "a"))
		checksumsEqual(t, "the other primary's o", otherBefore, target.Checksums(t, "o"))
		pos, _ := understudy.ParsePosition(target.QueryString(t, "SELECT @@gtid_slave_pos"))
		want := res.Position
		for _, g := range understudy.NewPosition().With(mustDomain(t, pos, 2)).GTIDs() {
			want = want.With(g)
		}
		if !pos.Equal(want) || mustDomain(t, pos, 2).String() != q.GTIDBinlogPos(t) {
			t.Fatalf("target gtid_slave_pos %s, want %s (domain 1 restored, domain 2 %s)", pos, want, q.GTIDBinlogPos(t))
		}
		q.Exec(t, "INSERT INTO o.t VALUES (3)")
		caughtUp()
		checksumsEqual(t, "the other primary's o after the restore", q.Checksums(t, "o"), target.Checksums(t, "o"))
		running, err := runningConns(ctx, target.DB(t))
		if err != nil || len(running) != 1 || len(running["other"]) != 2 {
			t.Fatalf("running replication connections %v, %v; want both threads of other", running, err)
		}

		// The same restore again, with the other connection stopped: its
		// domain is kept, and it carries on where it stopped.
		target.Exec(t, "STOP SLAVE 'other'")
		q.Exec(t, "INSERT INTO o.t VALUES (4)")
		if _, err := Run(ctx, o); err != nil {
			t.Fatalf("restore again: %v", err)
		}
		if running, _ := runningConns(ctx, target.DB(t)); len(running) != 0 {
			t.Fatalf("restore started stopped connections: %v", running)
		}
		if pos, _ := understudy.ParsePosition(target.QueryString(t, "SELECT @@gtid_slave_pos")); !pos.Contains(mustDomain(t, want, 2)) {
			t.Fatalf("target gtid_slave_pos %s lost domain 2 at %s", pos, mustDomain(t, want, 2))
		}
		target.Exec(t, "START SLAVE 'other'")
		caughtUp()
		checksumsEqual(t, "the other primary's o, replicated after the second restore", q.Checksums(t, "o"), target.Checksums(t, "o"))
		if running, err := runningConns(ctx, target.DB(t)); err != nil || len(running["other"]) != 2 {
			t.Fatalf("running replication connections %v, %v; want both threads of other", running, err)
		}
	})

	// restore --databases a: every change to a is applied, whatever the
	// default database was, and nothing else: not the changes to b, not
	// DROP DATABASE b, not CREATE DATABASE c (the target has a b of its own).
	t.Run("databases with cross-database DDL", func(t *testing.T) {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		target.Exec(t, "CREATE DATABASE b")
		target.Exec(t, "CREATE TABLE b.mine (id INT PRIMARY KEY)")
		target.Exec(t, "INSERT INTO b.mine VALUES (42)")
		mine := target.Checksums(t, "b")
		o := options(t, src.dir, target)
		o.Databases = []string{"a"}
		if _, err := Run(ctx, o); err != nil {
			t.Fatalf("restore --databases a: %v", err)
		}
		checksumsEqual(t, "a", src.final, target.Checksums(t, "a"))
		checksumsEqual(t, "the target's own b", mine, target.Checksums(t, "b"))
		// A routine is no table, and MariaDB's table filters let CREATE
		// PROCEDURE through whatever its database: the binlog server
		// turns those of other databases into no-ops. a.pa is applied
		// although b was the default database; b.pb (made with a as the
		// default) is not, and c.pc, in a database the target lacks,
		// does not stop the replay.
		for db, want := range map[string]string{"a": "1", "b": "0", "c": "0"} {
			if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?", db); got != want {
				t.Errorf("%s routines in %s, want %s", got, db, want)
			}
		}
		if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'c'"); got != "0" {
			t.Fatalf("CREATE DATABASE c was applied")
		}

		// The connection's filter outlives it on the target: a restore of
		// every database after this one must not keep filtering.
		o.Databases, o.Force = nil, true
		if _, err := Run(ctx, o); err != nil {
			t.Fatalf("restore of every database: %v", err)
		}
		checksumsEqual(t, "a", src.final, target.Checksums(t, "a"))
		for db, want := range map[string]string{"b": "0", "c": "1"} {
			if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", db); got != want {
				t.Fatalf("after a restore of every database, database %s: %s, want %s", db, got, want)
			}
		}
	})

	// A restore to an earlier point, with --force, into a target that an
	// earlier restore left at the end, interrupted in its replay: the rerun
	// continues from where the replay got to, never from the position the
	// earlier restore left. And if the target's position is outside the
	// restore's range by the time of the rerun, it loads again.
	t.Run("interrupted restore into a target restored before", func(t *testing.T) {
		s := mustDomain(t, src.m.Position, 1)
		point := understudy.NewPosition(understudy.GTID{Domain: 1, ServerID: s.ServerID, Seq: s.Seq + 8})
		ref := mariadbtest.Start(t, mariadbtest.Options{ServerID: 81, NoBinlog: true})
		o := options(t, src.dir, ref)
		o.Stop = understudy.StopPoint{UntilGTID: point}
		if _, err := Run(ctx, o); err != nil {
			t.Fatalf("restore to %s: %v", point, err)
		}
		// (c, which the earlier restore's replay created after the point,
		// is no database of the snapshot's: --force leaves it.)
		want := ref.Checksums(t, "a", "b")

		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		o = options(t, src.dir, target)
		if _, err := Run(ctx, o); err != nil {
			t.Fatalf("restore to the end: %v", err)
		}
		o.Stop, o.Force = understudy.StopPoint{UntilGTID: point}, true
		interrupted := func() {
			t.Helper()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			io := o
			io.Progress = func(stage string, _, _ int64) {
				if stage == "replay" {
					cancel()
				}
			}
			if _, err := Run(cctx, io); !errors.Is(err, context.Canceled) {
				t.Fatalf("restore interrupted in its replay: %v", err)
			}
		}
		interrupted()
		res, err := Run(ctx, o)
		if err != nil || !res.Resumed || !res.Position.Equal(point) {
			t.Fatalf("rerun of the interrupted restore: %+v, %v", res, err)
		}
		checksumsEqual(t, "the rerun", want, target.Checksums(t, "a", "b"))

		interrupted()
		target.Exec(t, "SET GLOBAL gtid_slave_pos = '"+end.String()+"'") // beyond the point
		if res, err = Run(ctx, o); err != nil || !res.Position.Equal(point) || res.Load == 0 {
			t.Fatalf("rerun with the target's position beyond the point: %+v, %v; want a new load", res, err)
		}
		checksumsEqual(t, "the rerun that loaded again", want, target.Checksums(t, "a", "b"))
	})
}

// TestRestoreListenAddress: where the binlog server that feeds the target
// listens, and where the target is told to connect (its Master_Host, read
// on the target during the replay).
func TestRestoreListenAddress(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)

	// watchRestore runs the restore and returns the target's Master_Host during
	// the replay and the address the binlog server listened on.
	watchRestore := func(t *testing.T, o Options, target *mariadbtest.Server) (masterHost, listened string) {
		t.Helper()
		var logs mariadbtest.LogBuffer
		o.Log = slog.New(slog.NewTextHandler(io.MultiWriter(&logs, mariadbtest.TestLog{TB: t}), &slog.HandlerOptions{Level: slog.LevelInfo}))
		o.Progress = func(stage string, _, _ int64) {
			if stage == "replay" && masterHost == "" {
				st, _, err := replica.ConnStatus(ctx, target.DB(t), ConnName)
				if err != nil {
					t.Errorf("SHOW SLAVE STATUS on the target: %v", err)
				}
				masterHost = st["Master_Host"]
			}
		}
		if _, err := Run(ctx, o); err != nil {
			t.Fatalf("restore: %v", err)
		}
		checksumsEqual(t, "a", src.final, target.Checksums(t, "a"))
		m := regexp.MustCompile(`msg="serving the archive to replicas" .*?\baddr=(\S+)`).FindStringSubmatch(logs.String())
		if m == nil {
			t.Fatalf("the binlog server did not log where it listens")
		}
		listened, _, err := net.SplitHostPort(m[1])
		if err != nil {
			t.Fatal(err)
		}
		return masterHost, listened
	}

	// Without Listen and Advertise: the binlog server listens on this
	// host's address that faces the target, and the target connects there.
	// The target listens on ::1 too and is reached there, so that this
	// address is ::1, not the 127.0.0.1 of a loopback-only listener.
	t.Run("default: the address facing the target", func(t *testing.T) {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true, Args: []string{"--bind-address=127.0.0.1,::1"}})
		addr := net.JoinHostPort("::1", strconv.Itoa(target.Port))
		db, err := sql.Open("mysql", "root@tcp("+addr+")/")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		facing := routeIP(t, addr)
		if facing == "127.0.0.1" {
			t.Fatalf("the address facing %s is 127.0.0.1: this test would prove nothing", addr)
		}
		o := options(t, src.dir, target)
		o.Target, o.TargetAddr = db, addr
		masterHost, listened := watchRestore(t, o, target)
		if masterHost != facing || listened != facing {
			t.Fatalf("the binlog server listened on %s and the target connected to %s; want both on %s, the address facing the target", listened, masterHost, facing)
		}
	})

	// Listen on every address without Advertise: the target is told the
	// address that faces it, not 0.0.0.0 or ::.
	t.Run("listen on every address", func(t *testing.T) {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		o := options(t, src.dir, target)
		o.Listen = "0.0.0.0:0"
		masterHost, listened := watchRestore(t, o, target)
		if ip := net.ParseIP(listened); ip == nil || !ip.IsUnspecified() {
			t.Fatalf("the binlog server listened on %s, want every address", listened)
		}
		if want := routeIP(t, o.TargetAddr); masterHost != want {
			t.Fatalf("the target connected to %s, want %s, the address facing it", masterHost, want)
		}
	})

	// An advertised address the target cannot reach (a NAT without the
	// port forwarded, say) ends the restore in one line, instead of the
	// target retrying for ever.
	t.Run("an address the target cannot reach", func(t *testing.T) {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		o := options(t, src.dir, target)
		o.Listen, o.Advertise, o.ConnectTimeout = "127.0.0.1:0", "127.0.0.1:1", 2*time.Second
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		_, err := Run(ctx, o)
		oneLine(t, err, "did not connect to understudy's binlog server at 127.0.0.1:1 within 2s")
		if st, ok, _ := replica.ConnStatus(ctx, target.DB(t), ConnName); ok {
			t.Fatalf("the target kept the replication connection: %v", st)
		}
	})
}

// routeIP returns the local address of the route to addr, found apart
// from the code under test.
func routeIP(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

func mustDomain(t *testing.T, p understudy.Position, d uint32) understudy.GTID {
	t.Helper()
	g, ok := p.Domain(d)
	if !ok {
		t.Fatalf("position %s has no domain %d", p, d)
	}
	return g
}

func TestWildDoTables(t *testing.T) {
	got, err := wildDoTables([]string{"a", "my_db", `50%\x`})
	if want := `a.%,my\_db.%,50\%\\x.%`; err != nil || got != want {
		t.Fatalf("wildDoTables = %q, %v; want %q", got, err, want)
	}
	if _, err := wildDoTables([]string{"a,b"}); err == nil || !strings.Contains(err.Error(), `database "a,b" has a comma`) {
		t.Fatalf("a database named a,b: %v", err)
	}
}

// runningConns returns the target's replication connections whose IO or SQL
// thread runs, with the threads that run.
func runningConns(ctx context.Context, db *sql.DB) (map[string][]string, error) {
	all, err := replica.AllStatus(ctx, db)
	out := map[string][]string{}
	for _, st := range all {
		if t := st.Threads(); len(t) > 0 && st.Name() != ConnName {
			out[st.Name()] = t
		}
	}
	return out, err
}
