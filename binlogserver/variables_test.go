package binlogserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/archiver"
	"github.com/understudy-db/understudy/binlog"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestSemiSyncReplica: the binlog server does not implement semi-sync, so
// it has no rpl_semi_sync_master_enabled variable (as a server without
// the semi-sync plugin); a replica with rpl_semi_sync_slave_enabled=ON
// falls back to asynchronous replication and replicates. (With an OFF row
// the replica demands a semi-sync header on every event and stops.)
func TestSemiSyncReplica(t *testing.T) {
	p := startPrimary(t, mariadbtest.Options{ServerID: 1})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	for i := range 5 {
		p.Exec(t, "INSERT INTO app.t VALUES (?)", i)
	}
	dir := t.TempDir()
	archiveCaughtUp(t, p, dir)
	addr := serve(t, dir, nil).Addr().String()

	c := connect(t, addr)
	r, err := c.Execute("SHOW VARIABLES LIKE 'rpl_semi_sync_master_enabled'")
	if err != nil {
		t.Fatal(err)
	}
	if n := r.RowNumber(); n != 0 {
		v, _ := r.GetString(0, 1)
		t.Fatalf("SHOW VARIABLES LIKE 'rpl_semi_sync_master_enabled': %d rows (%q), want none: the binlog server does not implement semi-sync", n, v)
	}
	_, err = c.Execute("SELECT @@global.rpl_semi_sync_master_enabled")
	var me *mysql.MyError
	if !errors.As(err, &me) || me.Code != mysql.ER_UNKNOWN_SYSTEM_VARIABLE {
		t.Fatalf("SELECT @@global.rpl_semi_sync_master_enabled: %v, want ERR 1193 (unknown system variable)", err)
	}

	rep := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50, Args: []string{"--rpl-semi-sync-slave-enabled=ON"}})
	startReplica(t, rep, addr)
	waitPos(t, rep, p.GTIDBinlogPos(t), 20*time.Second)
	if got := rep.QueryString(t, "SELECT COUNT(*) FROM app.t"); got != "5" {
		t.Fatalf("the replica has %s rows, want 5", got)
	}
	if got := rep.QueryString(t, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_SLAVE_STATUS'"); got != "OFF" {
		t.Fatalf("the replica's Rpl_semi_sync_slave_status is %s, want OFF (asynchronous)", got)
	}
	if st := replicaStatus(t, rep); st["Slave_IO_Running"] != "Yes" || st["Last_IO_Error"] != "" {
		t.Fatalf("Slave_IO_Running %q, Last_IO_Error %q: want Yes and none", st["Slave_IO_Running"], st["Last_IO_Error"])
	}
}

// TestBinlogChecksumFollowsArchive: @@binlog_checksum is the setting of
// the archive's newest file, from a primary whose binlog_checksum goes
// from CRC32 to NONE and back; a MariaDB replica replicates across the
// files of either setting (the ROTATE that ends a file has that file's
// setting).
func TestBinlogChecksumFollowsArchive(t *testing.T) {
	p := startPrimary(t, mariadbtest.Options{ServerID: 1})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	insert := func(from int) {
		for i := from; i < from+3; i++ {
			p.Exec(t, "INSERT INTO app.t VALUES (?)", i)
		}
	}
	insert(0)
	dir := t.TempDir()
	archiveCaughtUp(t, p, dir)
	addr := serve(t, dir, nil).Addr().String()
	c := connect(t, addr)
	checksum := func(want string) {
		t.Helper()
		if got := selectString(t, c, "@@global.binlog_checksum"); got != want {
			t.Fatalf("@@global.binlog_checksum = %q, want %q", got, want)
		}
		// what a replica asks
		if _, err := c.Execute("SET @master_binlog_checksum = @@global.binlog_checksum"); err != nil {
			t.Fatal(err)
		}
		if got := selectString(t, c, "@master_binlog_checksum"); got != want {
			t.Fatalf("@master_binlog_checksum = %q, want %q", got, want)
		}
	}
	checksum("CRC32")
	if got := selectString(t, c, "@@binlog_format"); got != "ROW" {
		t.Fatalf("@@binlog_format = %q from a ROW primary, want ROW", got)
	}

	p.Exec(t, "SET GLOBAL binlog_checksum = 'NONE'")
	insert(3)
	archiveCaughtUp(t, p, dir)
	checksum("NONE")
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplica(t, r, addr)
	waitPos(t, r, p.GTIDBinlogPos(t), 20*time.Second)

	p.Exec(t, "SET GLOBAL binlog_checksum = 'CRC32'")
	insert(6)
	archiveCaughtUp(t, p, dir)
	checksum("CRC32")
	waitPos(t, r, p.GTIDBinlogPos(t), 20*time.Second)
	if got := r.QueryString(t, "SELECT COUNT(*) FROM app.t"); got != "9" {
		t.Fatalf("the replica has %s rows, want 9", got)
	}
	if st := replicaStatus(t, r); st["Slave_IO_Running"] != "Yes" || st["Last_IO_Error"] != "" {
		t.Fatalf("Slave_IO_Running %q, Last_IO_Error %q: want Yes and none", st["Slave_IO_Running"], st["Last_IO_Error"])
	}
}

// TestBinlogFormatAndDomain: @@binlog_format says how the archive's newest
// changes are logged, for primaries with binlog_format ROW, STATEMENT and
// MIXED; a MIXED primary whose statements were all safe has logged only
// statements. @@gtid_domain_id is the domain the primary writes in, even
// when the archive holds a lower domain too; the other answers are the
// archive's position, gtid_strict_mode ON, the configured server_id.
func TestBinlogFormatAndDomain(t *testing.T) {
	for _, tc := range []struct {
		format     string
		safe, want string // the answer after safe statements, and after an unsafe one too
	}{
		{"ROW", "ROW", "ROW"},
		{"STATEMENT", "STATEMENT", "STATEMENT"},
		{"MIXED", "STATEMENT", "MIXED"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			p := startPrimary(t, mariadbtest.Options{ServerID: 1, DomainID: 5, BinlogFormat: tc.format})
			// a transaction of domain 2, before the primary's own
			ctx := context.Background()
			conn, err := p.DB(t).Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"SET SESSION gtid_domain_id = 2", "CREATE DATABASE app", "SET SESSION gtid_domain_id = 5"} {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			conn.Close()
			p.Exec(t, "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))")
			for i := range 3 {
				p.Exec(t, "INSERT INTO app.t (v) VALUES (?)", fmt.Sprint(i))
			}
			dir := t.TempDir()
			archiveCaughtUp(t, p, dir)
			c := connect(t, serve(t, dir, nil).Addr().String())
			if got := selectString(t, c, "@@global.binlog_format"); got != tc.safe {
				t.Fatalf("@@global.binlog_format = %q after safe statements, want %q", got, tc.safe)
			}
			for expr, want := range map[string]string{
				"@@global.gtid_domain_id":   "5",
				"@@global.gtid_binlog_pos":  p.GTIDBinlogPos(t),
				"@@global.gtid_strict_mode": "1",
				"@@server_id":               "9001",
			} {
				if got := selectString(t, c, expr); got != want {
					t.Errorf("%s = %q, want %q", expr, got, want)
				}
			}
			if !strings.HasPrefix(p.GTIDBinlogPos(t), "2-1-1,5-1-") {
				t.Fatalf("the primary's gtid_binlog_pos %q lacks domain 2", p.GTIDBinlogPos(t))
			}

			// unsafe for statement-based logging: a MIXED primary logs rows
			p.Exec(t, "INSERT INTO app.t (v) VALUES (UUID())")
			archiveCaughtUp(t, p, dir)
			if got := selectString(t, c, "@@global.binlog_format"); got != tc.want {
				t.Fatalf("@@global.binlog_format = %q, want %q", got, tc.want)
			}
			r, err := c.Execute("SHOW VARIABLES LIKE 'binlog_format'")
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := r.GetString(0, 1); r.RowNumber() != 1 || got != tc.want {
				t.Fatalf("SHOW VARIABLES LIKE 'binlog_format': %d rows, %q; want %q", r.RowNumber(), got, tc.want)
			}
		})
	}
}

// TestOutOfOrderArchive: the binlog server answers gtid_strict_mode=ON,
// and holds to it: in an archive whose GTIDs do not increase in a domain
// (here made by hand: understudy never archives one), the transaction that
// does not follow is never sent. The replica gets every transaction before
// it and then ERR 1236 naming it.
func TestOutOfOrderArchive(t *testing.T) {
	p := startPrimary(t, mariadbtest.Options{ServerID: 1})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	for i := range 5 {
		p.Exec(t, "INSERT INTO app.t VALUES (?)", i)
	}
	dir := t.TempDir()
	archiveCaughtUp(t, p, dir)

	// The active file's last transaction gets a sequence number below
	// the one before it: in its GTID event and in its index record, each
	// with its CRC32.
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := a.Files()
	fi := files[len(files)-1]
	recs, err := a.Records(fi)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Sealed || len(recs) < 3 {
		t.Fatalf("want an active file of at least 3 transactions: %+v", fi)
	}
	last, prev := recs[len(recs)-1], recs[len(recs)-2]
	bad := last.GTID
	bad.Seq = prev.GTID.Seq - 1
	path := filepath.Join(dir, fi.Name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, binlog.HeaderSize)
	if _, err := f.ReadAt(hdr, int64(last.Start)); err != nil {
		t.Fatal(err)
	}
	h, err := binlog.ParseHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	ev := make([]byte, h.Size)
	if _, err := f.ReadAt(ev, int64(last.Start)); err != nil {
		t.Fatal(err)
	}
	if gi, err := binlog.ParseGTIDEvent(ev, true); err != nil || gi.GTID != last.GTID {
		t.Fatalf("the GTID event at %d: %+v, %v; want %s", last.Start, gi, err, last.GTID)
	}
	binary.LittleEndian.PutUint64(ev[binlog.HeaderSize:], bad.Seq)
	binary.LittleEndian.PutUint32(ev[len(ev)-binlog.ChecksumSize:], crc32.ChecksumIEEE(ev[:len(ev)-binlog.ChecksumSize]))
	if _, err := f.WriteAt(ev, int64(last.Start)); err != nil {
		t.Fatal(err)
	}
	idx, err := os.ReadFile(path + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	patched := false
	for off := 0; off+archive.RecordSize <= len(idx); off += archive.RecordSize {
		r := idx[off : off+archive.RecordSize]
		if binary.LittleEndian.Uint32(r) == last.Start && binary.LittleEndian.Uint64(r[16:]) == last.GTID.Seq {
			binary.LittleEndian.PutUint64(r[16:], bad.Seq)
			binary.LittleEndian.PutUint32(r[28:], crc32.ChecksumIEEE(r[:28]))
			patched = true
		}
	}
	if !patched {
		t.Fatalf("no index record of %s at %d", last.GTID, last.Start)
	}
	if err := os.WriteFile(path+".idx", idx, 0o600); err != nil {
		t.Fatal(err)
	}

	srv := serve(t, dir, nil)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplica(t, r, srv.Addr().String())
	st := waitIOError(t, r, 20*time.Second)
	if e := st["Last_IO_Error"]; st["Last_IO_Errno"] != "1236" || !strings.Contains(e, "transaction "+bad.String()+"): it does not follow "+prev.GTID.String()) {
		t.Fatalf("Last_IO_Errno %s, Last_IO_Error %q: want ERR 1236 saying %s does not follow %s", st["Last_IO_Errno"], e, bad, prev.GTID)
	}
	waitPos(t, r, prev.GTID.String(), 10*time.Second)
	if got := r.QueryString(t, "SELECT @@global.gtid_slave_pos"); got != prev.GTID.String() {
		t.Fatalf("the replica is at %s, want %s: nothing of %s", got, prev.GTID, bad)
	}
}

// startPrimary starts a primary with the replication user of
// archiveCaughtUp.
func startPrimary(t *testing.T, opts mariadbtest.Options) *mariadbtest.Server {
	t.Helper()
	p := mariadbtest.Start(t, opts)
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER "+replUser+"@'%' IDENTIFIED BY '"+replPassword+"'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO "+replUser+"@'%'")
	return p
}

// archiveCaughtUp archives p into dir until the archive holds everything p
// has binlogged (again, after earlier calls).
func archiveCaughtUp(t *testing.T, p *mariadbtest.Server, dir string) {
	t.Helper()
	src := understudy.Source{Name: "db", Host: "127.0.0.1", Port: p.Port, User: replUser, Password: replPassword, ServerID: 9100, Heartbeat: 300 * time.Millisecond}
	ar := archiver.New(src, dir, testLogger(t), nil)
	ar.UntilCaughtUp = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := ar.Run(ctx); err != nil {
		t.Fatalf("archiving the primary: %v", err)
	}
}

// connect logs in to the binlog server at addr as a client.
func connect(t *testing.T, addr string) *client.Conn {
	t.Helper()
	c, err := client.ConnectWithTimeout(addr, serveUser, servePassword, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// selectString answers SELECT expr on the binlog server.
func selectString(t *testing.T, c *client.Conn, expr string) string {
	t.Helper()
	r, err := c.Execute("SELECT " + expr)
	if err != nil {
		t.Fatalf("SELECT %s: %v", expr, err)
	}
	s, err := r.GetString(0, 0)
	if err != nil {
		t.Fatalf("SELECT %s: %v", expr, err)
	}
	return s
}

// TestTxnControl: the statements every binlog format logs inside a
// transaction do not count as DML statements.
func TestTxnControl(t *testing.T) {
	for sql, want := range map[string]bool{
		"BEGIN": true, "COMMIT": true, " rollback": true, "ROLLBACK TO SAVEPOINT a": true, "SAVEPOINT `a`": true,
		"RELEASE SAVEPOINT a": true, "XA START 'x'": true, "XA END 'x'": true, "": true,
		"INSERT INTO t VALUES (1)": false, "UPDATE t SET a=1": false, "BEGINNING": false, "DELETE FROM t": false,
	} {
		if got := isTxnControl(sql); got != want {
			t.Errorf("isTxnControl(%q) = %v, want %v", sql, got, want)
		}
	}
}

// TestBooleanVariables: log_bin and gtid_strict_mode are booleans, and the
// binlog server answers them as MariaDB does: SELECT @@log_bin is the
// integer 1 (understudy's own source check reads it into an integer; "ON"
// failed it), SHOW VARIABLES says ON. The primary's own answers are the
// reference.
func TestBooleanVariables(t *testing.T) {
	p := startPrimary(t, mariadbtest.Options{ServerID: 1, Args: []string{"--gtid-strict-mode=ON"}})
	p.Exec(t, "CREATE DATABASE app")
	dir := t.TempDir()
	archiveCaughtUp(t, p, dir)
	srv := connect(t, serve(t, dir, nil).Addr().String())
	prim, err := client.ConnectWithTimeout(fmt.Sprintf("%s:%d", p.Host, p.Port), "root", "", "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer prim.Close()
	answer := func(c *client.Conn, q string) string {
		t.Helper()
		r, err := c.Execute(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if r.RowNumber() != 1 {
			t.Fatalf("%s: %d rows", q, r.RowNumber())
		}
		var vals []string
		for i := range r.Fields {
			v, err := r.GetString(0, i)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			vals = append(vals, v)
		}
		return strings.Join(vals, " ")
	}
	for _, q := range []string{
		"SELECT @@log_bin, @@global.gtid_strict_mode",
		"SHOW VARIABLES LIKE 'log_bin'",
		"SHOW GLOBAL VARIABLES LIKE 'gtid_strict_mode'",
	} {
		want, got := answer(prim, q), answer(srv, q)
		if got != want {
			t.Errorf("%s: the binlog server answers %q, the primary %q", q, got, want)
		}
	}
	// SET @v = @@log_bin keeps what SELECT answers.
	if _, err := srv.Execute("SET @lb = @@log_bin"); err != nil {
		t.Fatal(err)
	}
	if got := selectString(t, srv, "@lb"); got != "1" {
		t.Errorf("@lb = %q after SET @lb = @@log_bin, want 1", got)
	}
}
