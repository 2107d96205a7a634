package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestObjectTypes takes a snapshot of a database with every kind of object
// MariaDB 10.11 has and loads it into a fresh server: sequences keep their
// state (no value the primary handed out is handed out again),
// system-versioned tables keep their history, and every table, view,
// routine, trigger and event comes back as SHOW CREATE gives it on the
// primary.
func TestObjectTypes(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	for _, q := range []string{
		"CREATE DATABASE o",
		"CREATE DATABASE o2",
		// A sequence used with a cache, and one that counts down and cycles.
		"CREATE SEQUENCE o.s START WITH 100 INCREMENT BY 7 CACHE 20",
		"CREATE SEQUENCE o.down START WITH -1 INCREMENT BY -1 MINVALUE -5 MAXVALUE -1 CYCLE CACHE 0",
		// A table whose default names a sequence of a database loaded
		// earlier, and one of a later database.
		"CREATE SEQUENCE o2.ids",
		"CREATE TABLE o.a_uses (id INT PRIMARY KEY DEFAULT NEXTVAL(o.s), k BIGINT DEFAULT NEXTVAL(o2.ids))",
		// System-versioned tables: implicit periods, explicit timestamp
		// periods with a secondary key, partitioned by SYSTEM_TIME, and
		// transaction-precise (only the current rows are kept).
		"CREATE TABLE o.hist (id INT PRIMARY KEY, v VARCHAR(20)) WITH SYSTEM VERSIONING",
		"CREATE TABLE o.hist2 (id INT PRIMARY KEY, v VARCHAR(20), KEY (v), rs TIMESTAMP(6) AS ROW START INVISIBLE, re TIMESTAMP(6) AS ROW END INVISIBLE, PERIOD FOR SYSTEM_TIME (rs, re)) WITH SYSTEM VERSIONING",
		"CREATE TABLE o.histp (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING PARTITION BY SYSTEM_TIME (PARTITION ph HISTORY, PARTITION pc CURRENT)",
		"CREATE TABLE o.histk (a INT, v INT, KEY (a)) WITH SYSTEM VERSIONING", // cut into chunks of a secondary key
		"CREATE TABLE o.histtrx (id INT PRIMARY KEY, v INT, ts BIGINT UNSIGNED AS ROW START INVISIBLE, te BIGINT UNSIGNED AS ROW END INVISIBLE, PERIOD FOR SYSTEM_TIME (ts, te)) WITH SYSTEM VERSIONING",
		// Application-time periods, with WITHOUT OVERLAPS.
		"CREATE TABLE o.prices (item INT, price DECIMAL(10,2), valid_from DATE, valid_to DATE, PERIOD FOR valid (valid_from, valid_to), PRIMARY KEY (item, valid WITHOUT OVERLAPS))",
		// Invisible and generated columns, a CHECK constraint a row
		// violates, a foreign key to a table created after it, full-text
		// and spatial indexes, partitions, other engines.
		"CREATE TABLE o.cols (id INT PRIMARY KEY, hidden INT INVISIBLE, g INT AS (id * 2) VIRTUAL, st INT AS (id * 3) STORED)",
		"CREATE TABLE o.c_parent (id INT PRIMARY KEY)",
		"CREATE TABLE o.b_child (id INT PRIMARY KEY, parent INT, FOREIGN KEY (parent) REFERENCES o.c_parent (id))",
		"CREATE TABLE o.docs (id INT PRIMARY KEY, body TEXT, pt POINT NOT NULL, FULLTEXT KEY (body), SPATIAL KEY (pt))",
		"CREATE TABLE o.parts (id INT PRIMARY KEY, v INT) PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN MAXVALUE)",
		"CREATE TABLE o.aria (id INT PRIMARY KEY, v INT) ENGINE=Aria",
		"CREATE TABLE o.my (id INT PRIMARY KEY, v INT) ENGINE=MyISAM",
		// Views on views (named before what they read), a view on a
		// function, routines, a trigger, an event.
		"CREATE FUNCTION o.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
		"CREATE VIEW o.z_base AS SELECT id, v FROM o.hist",
		"CREATE VIEW o.a_top AS SELECT id FROM o.z_base",
		"CREATE VIEW o.b_fn AS SELECT o.twice(id) AS d FROM o.c_parent",
		"CREATE VIEW o2.cross_db AS SELECT * FROM o.a_top",
		"CREATE PROCEDURE o.p() SELECT 1",
		"CREATE TRIGGER o.t_ins BEFORE INSERT ON o.c_parent FOR EACH ROW SET NEW.id = NEW.id",
		"CREATE EVENT o.e ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM o.my",
		// Objects whose session settings decide what they are: PL/SQL
		// syntax and a package (sql_mode=ORACLE), a trigger of a lenient
		// application (no STRICT_TRANS_TABLES: a too long value is cut,
		// not refused), a latin1 literal, an event whose STARTS is in
		// its own time zone.
		"SET SESSION sql_mode = 'ORACLE'; CREATE PROCEDURE o.ora(a INT) AS n INT := 0; BEGIN n := a * 2; SELECT n; END; SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT; SET NAMES utf8mb4",
		"SET SESSION sql_mode = 'ORACLE'; CREATE PACKAGE o.pkg AS FUNCTION f RETURN INT; END; SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT; SET NAMES utf8mb4",
		"SET SESSION sql_mode = 'ORACLE'; CREATE PACKAGE BODY o.pkg AS FUNCTION f RETURN INT AS BEGIN RETURN 42; END; END; SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT; SET NAMES utf8mb4",
		"CREATE TABLE o.lenient (id INT PRIMARY KEY, note VARCHAR(3))",
		"SET SESSION sql_mode = ''; CREATE TRIGGER o.t_len BEFORE INSERT ON o.lenient FOR EACH ROW SET NEW.note = CONCAT(NEW.note, '-long'); SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT; SET NAMES utf8mb4",
		// A latin1 client writes a literal with é (byte E9) in it.
		"SET NAMES latin1; CREATE FUNCTION o.lat() RETURNS VARCHAR(10) CHARSET utf8mb4 DETERMINISTIC RETURN CONCAT('caf\xe9'); CREATE FUNCTION o.lit() RETURNS VARCHAR(40) DETERMINISTIC RETURN COLLATION('x'); SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT; SET NAMES utf8mb4",
		"SET time_zone = '+03:00'; CREATE EVENT o.e_tz ON SCHEDULE EVERY 1 HOUR STARTS '2030-01-01 09:00:00' DISABLE DO DELETE FROM o.my; SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT; SET NAMES utf8mb4",
	} {
		p.Exec(t, q)
	}
	// Data: sequences handed out values, history rows from updates and
	// deletes, a row violating the CHECK constraint added after it.
	var handed []int64
	for i := 0; i < 5; i++ {
		n, _ := strconv.ParseInt(p.QueryString(t, "SELECT NEXTVAL(o.s)"), 10, 64)
		handed = append(handed, n)
	}
	p.Exec(t, "INSERT INTO o.a_uses () VALUES (), (), ()") // three more from o.s
	for i := 0; i < 3; i++ {
		p.QueryString(t, "SELECT NEXTVAL(o.down)")
	}
	for _, q := range []string{
		"INSERT INTO o.hist VALUES (1, 'one'), (2, 'two'), (3, 'three')",
		"UPDATE o.hist SET v = 'uno' WHERE id = 1",
		"UPDATE o.hist SET v = 'eins' WHERE id = 1",
		"DELETE FROM o.hist WHERE id = 2",
		"INSERT INTO o.hist2 (id, v) VALUES (1, 'a'), (2, 'b')",
		"UPDATE o.hist2 SET v = 'c'",
		"DELETE FROM o.hist2 WHERE id = 2",
		"INSERT INTO o.histp VALUES (1, 1), (2, 2)",
		"UPDATE o.histp SET v = v + 10",
		"INSERT INTO o.histk SELECT seq, seq FROM o.seq_1_to_40",
		"UPDATE o.histk SET v = v + 1 WHERE a % 3 = 0",
		"DELETE FROM o.histk WHERE a % 5 = 0",
		"INSERT INTO o.histtrx (id, v) VALUES (1, 1)",
		"UPDATE o.histtrx SET v = 2",
		"INSERT INTO o.prices VALUES (1, 10, '2026-01-01', '2026-06-01'), (1, 12, '2026-06-01', '2027-01-01'), (2, 5, '2026-01-01', '2030-01-01')",
		"DELETE FROM o.prices FOR PORTION OF valid FROM '2026-03-01' TO '2026-04-01' WHERE item = 2",
		"INSERT INTO o.cols (id, hidden) VALUES (1, 10), (2, 20), (-1, 30)",
		"INSERT INTO o.c_parent VALUES (1), (2)",
		"INSERT INTO o.b_child VALUES (1, 1), (2, 2)",
		"INSERT INTO o.docs VALUES (1, 'full text', POINT(1, 2))",
		"INSERT INTO o.parts VALUES (1, 1), (20, 2)",
		"INSERT INTO o.aria VALUES (1, 1)",
		"INSERT INTO o.my VALUES (1, 1)",
	} {
		p.Exec(t, q)
	}
	p.Exec(t, "SET SESSION check_constraint_checks = 0; ALTER TABLE o.cols ADD CONSTRAINT pos CHECK (id > 0)")
	p.Exec(t, "ANALYZE TABLE o.histk, o.hist, o.hist2, o.prices") // row estimates, to cut chunks
	if got := p.QueryString(t, "SELECT COUNT(*) FROM o.hist FOR SYSTEM_TIME ALL"); got != "5" {
		t.Fatalf("o.hist has %s rows with its history, want 5", got)
	}
	for _, n := range []string{p.QueryString(t, "SELECT MAX(id) FROM o.a_uses")} {
		v, _ := strconv.ParseInt(n, 10, 64)
		handed = append(handed, v)
	}

	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2, ChunkRows: 10})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, d := range m.Databases {
		for _, tb := range d.Tables {
			kinds[d.Name+"."+tb.Name] = tb.Kind
		}
	}
	for name, want := range map[string]string{"o.s": KindSequence, "o2.ids": KindSequence, "o.hist": KindVersioned, "o.hist2": KindVersioned,
		"o.histp": KindVersioned, "o.histk": KindVersioned, "o.histtrx": KindVersionedTrx, "o.prices": "", "o.cols": ""} {
		if got, ok := kinds[name]; !ok || got != want {
			t.Errorf("%s: kind %q (in the manifest: %v), want %q", name, got, ok, want)
		}
	}
	if tb := findTable(m, "o", "histk"); len(tb.Chunks) < 2 || tb.ChunkIndex != "a" {
		t.Errorf("o.histk: %d chunks on index %q, want several on a", len(tb.Chunks), tb.ChunkIndex)
	}
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	// Verified as it loads, and again once the objects are created.
	var verified int
	if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true, Verified: &verified}); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(ctx, target.DB(t), m, nil, 2); err != nil {
		t.Fatalf("chunk checksums on the target: %v", err)
	} else if n < len(kinds) || n != verified {
		t.Fatalf("%d chunks verified (%d by the load), want at least %d", n, verified, len(kinds))
	}
	// One changed row in one chunk of several, found by the parallel
	// verification and named.
	target.Exec(t, "UPDATE o.prices SET price = price + 1 WHERE item = 1 AND valid_from = '2026-01-01'")
	if _, err := Verify(ctx, target.DB(t), m, nil, 4); err == nil || !strings.Contains(err.Error(), "o.prices chunk") || !strings.Contains(err.Error(), "on the target; the snapshot has") {
		t.Fatalf("verification of a changed row: %v", err)
	}
	target.Exec(t, "UPDATE o.prices SET price = price - 1 WHERE item = 1 AND valid_from = '2026-01-01'")
	want, got := p.Checksums(t, "o", "o2"), target.Checksums(t, "o", "o2")
	for _, name := range []string{"o.s", "o.down", "o2.ids", "o.hist", "o.hist2", "o.histp", "o.histk", "o.histtrx", "o.prices", "o.cols"} {
		if want[name] == "" {
			t.Errorf("Checksums has nothing for %s: %v", name, want)
		}
	}
	if len(want) != len(got) {
		t.Errorf("%d tables and sequences on the target, %d on the primary", len(got), len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: checksum %q on the target, %q on the primary", name, got[name], w)
		}
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM o.hist FOR SYSTEM_TIME ALL"); got != "5" {
		t.Errorf("o.hist has %s rows with its history on the target, want 5", got)
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM o.hist FOR SYSTEM_TIME AS OF TIMESTAMP '2000-01-01 00:00:00'"); got != "0" {
		t.Errorf("o.hist as of 2000 has %s rows on the target: the history was rewritten", got)
	}
	if got := target.QueryString(t, "SELECT GROUP_CONCAT(v ORDER BY row_start) FROM o.hist FOR SYSTEM_TIME ALL WHERE id = 1"); got != "one,uno,eins" {
		t.Errorf("history of o.hist id 1 on the target: %s", got)
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM o.histtrx"); got != "1" {
		t.Errorf("o.histtrx has %s current rows on the target, want 1", got)
	}
	// No value handed out by the primary comes again.
	next, _ := strconv.ParseInt(target.QueryString(t, "SELECT NEXTVAL(o.s)"), 10, 64)
	for _, h := range handed {
		if next <= h {
			t.Fatalf("NEXTVAL(o.s) on the target is %d: the primary handed out %d (all: %v)", next, h, handed)
		}
	}
	if got, want := target.QueryString(t, "SELECT NEXTVAL(o.down)"), p.QueryString(t, "SELECT NEXTVAL(o.down)"); got != want {
		t.Errorf("NEXTVAL(o.down) on the target %s, on the primary %s", got, want)
	}
	// Every object as SHOW CREATE gives it on the primary (the generated
	// AUTO_INCREMENT value apart).
	autoInc := regexp.MustCompile(` AUTO_INCREMENT=\d+`)
	for _, q := range []string{
		"SHOW CREATE SEQUENCE o.s", "SHOW CREATE SEQUENCE o.down", "SHOW CREATE TABLE o.a_uses", "SHOW CREATE TABLE o.hist", "SHOW CREATE TABLE o.hist2",
		"SHOW CREATE TABLE o.histp", "SHOW CREATE TABLE o.histtrx", "SHOW CREATE TABLE o.prices", "SHOW CREATE TABLE o.cols",
		"SHOW CREATE TABLE o.b_child", "SHOW CREATE TABLE o.docs", "SHOW CREATE TABLE o.parts", "SHOW CREATE TABLE o.aria",
		"SHOW CREATE TABLE o.my", "SHOW CREATE VIEW o.a_top", "SHOW CREATE VIEW o.b_fn", "SHOW CREATE VIEW o2.cross_db",
		"SHOW CREATE FUNCTION o.twice", "SHOW CREATE PROCEDURE o.p", "SHOW CREATE TRIGGER o.t_ins", "SHOW CREATE EVENT o.e",
		"SHOW CREATE PROCEDURE o.ora", "SHOW CREATE PACKAGE o.pkg", "SHOW CREATE PACKAGE BODY o.pkg", "SHOW CREATE TRIGGER o.t_len",
		"SHOW CREATE FUNCTION o.lat", "SHOW CREATE FUNCTION o.lit", "SHOW CREATE EVENT o.e_tz",
	} {
		if w, g := showCreateOf(t, p, q), showCreateOf(t, target, q); autoInc.ReplaceAllString(w, "") != autoInc.ReplaceAllString(g, "") {
			t.Errorf("%s on the target:\n%s\non the primary:\n%s", q, g, w)
		}
		// The settings they run in (character_set_client apart: objects
		// are read and created in utf8mb4).
		for _, col := range []string{"sql_mode", "collation_connection", "time_zone"} {
			if w, g := showColumnOf(t, p, q, col), showColumnOf(t, target, q, col); w != g {
				t.Errorf("%s on the target: %s %q, on the primary %q", q, col, g, w)
			}
		}
	}
	if got := p.QueryString(t, "SELECT HEX(o.lat())"); got != "636166C3A9" {
		t.Fatalf("o.lat() on the primary returns %s, want café in utf8mb4", got)
	}
	// They behave as on the primary.
	for _, q := range []string{
		"SELECT o.pkg.f()", "SELECT HEX(o.lat())", "SELECT o.lit()",
		"SELECT CONVERT_TZ(STARTS, TIME_ZONE, '+00:00') FROM information_schema.EVENTS WHERE EVENT_NAME = 'e_tz'",
	} {
		if w, g := p.QueryString(t, q), target.QueryString(t, q); w != g {
			t.Errorf("%s: %q on the target, %q on the primary", q, g, w)
		}
	}
	for _, s := range []*mariadbtest.Server{p, target} {
		s.Exec(t, "SET SESSION sql_mode = 'STRICT_TRANS_TABLES'; INSERT INTO o.lenient VALUES (1, 'a')")
		if got := s.QueryString(t, "SELECT note FROM o.lenient"); got != "a-l" {
			t.Errorf("port %d: the lenient trigger stored %q, want it cut to \"a-l\"", s.Port, got)
		}
	}
	if got := target.QueryString(t, "SELECT GROUP_CONCAT(id, ':', hidden ORDER BY id) FROM o.cols"); got != "-1:30,1:10,2:20" {
		t.Errorf("o.cols on the target: %s", got)
	}
}

// showCreateOf returns the CREATE statement of a SHOW CREATE.
func showCreateOf(t *testing.T, s *mariadbtest.Server, q string) string {
	t.Helper()
	c, err := s.DB(t).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cols, err := showCreateColumns(context.Background(), c, q)
	stmt := cols.create()
	if err != nil {
		t.Fatalf("port %d: %s: %v", s.Port, q, err)
	}
	return strings.TrimSpace(stmt)
}

// showColumnOf returns one column of a SHOW CREATE ("" if it has none).
func showColumnOf(t *testing.T, s *mariadbtest.Server, q, col string) string {
	t.Helper()
	c, err := s.DB(t).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cols, err := showCreateColumns(context.Background(), c, q)
	if err != nil {
		t.Fatalf("port %d: %s: %v", s.Port, q, err)
	}
	return cols[col]
}

// TestEventsOnReplica: loaded for a replica (a restore's replay, a
// provisioned replica), an event the source runs is created DISABLE ON
// SLAVE and does not run on a target whose event_scheduler is ON; its
// disabled and its already replica-side events stay as they are. Loaded
// for a copy, the events keep their status.
func TestEventsOnReplica(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	for _, q := range []string{
		"CREATE DATABASE ev",
		"CREATE TABLE ev.ticks (id INT AUTO_INCREMENT PRIMARY KEY)",
		"INSERT INTO ev.ticks VALUES (), ()",
		"CREATE EVENT ev.tick ON SCHEDULE EVERY 1 SECOND ON COMPLETION PRESERVE ENABLE COMMENT 'ON COMPLETION PRESERVE ENABLE' DO INSERT INTO ev.ticks VALUES ()",
		"CREATE EVENT ev.off ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM ev.ticks",
		"CREATE EVENT ev.replicated ON SCHEDULE EVERY 1 DAY DISABLE ON SLAVE DO DELETE FROM ev.ticks",
	} {
		p.Exec(t, q)
	}
	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	status := func(s *mariadbtest.Server) string {
		return s.QueryString(t, "SELECT GROUP_CONCAT(EVENT_NAME, ':', STATUS ORDER BY EVENT_NAME) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = 'ev'")
	}
	for _, replica := range []bool{true, false} {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true, Args: []string{"--event-scheduler=ON"}})
		if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true, Replica: replica}); err != nil {
			t.Fatal(err)
		}
		want := status(p)
		if replica {
			want = "off:DISABLED,replicated:SLAVESIDE_DISABLED,tick:SLAVESIDE_DISABLED"
		}
		if got := status(target); got != want {
			t.Errorf("replica %v: events on the target %s, want %s", replica, got, want)
		}
		if replica {
			time.Sleep(2500 * time.Millisecond)
			if got := target.QueryString(t, "SELECT COUNT(*) FROM ev.ticks"); got != "2" {
				t.Errorf("the event ran on the replica: ev.ticks has %s rows, the snapshot 2", got)
			}
		}
	}
}

// TestDefinitionOnly: the rows of a MERGE table (the MyISAM tables under
// it) and of a FEDERATED table (a table of another server) are not saved:
// the snapshot keeps their definitions, the restored MERGE table shows
// the rows of its restored tables once, and the remote table gets no
// second copy of its rows.
func TestDefinitionOnly(t *testing.T) {
	ctx := context.Background()
	remote := mariadbtest.Start(t, mariadbtest.Options{ServerID: 3, NoBinlog: true})
	remote.Exec(t, "CREATE DATABASE far")
	remote.Exec(t, "CREATE TABLE far.items (id INT PRIMARY KEY, v VARCHAR(10))")
	remote.Exec(t, "INSERT INTO far.items VALUES (1, 'a'), (2, 'b'), (3, 'c')")
	p := mariadbtest.Start(t, mariadbtest.Options{})
	link := fmt.Sprintf("CREATE TABLE d.fed (id INT PRIMARY KEY, v VARCHAR(10)) ENGINE=FEDERATED CONNECTION='mysql://root@127.0.0.1:%d/far/items'", remote.Port)
	// CONNECT (package mariadb-plugin-connect): a table of another server
	// and one of an outside file keep only their definitions; a CSV table
	// without FILE_NAME keeps its rows in the database's directory, and is
	// saved like any table.
	outside := filepath.Join(t.TempDir(), "outside.csv")
	if err := os.WriteFile(outside, []byte("7,x\n8,y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	connect := []string{
		"INSTALL SONAME 'ha_connect'",
		fmt.Sprintf("CREATE TABLE d.c_remote ENGINE=CONNECT TABLE_TYPE=MYSQL CONNECTION='mysql://root@127.0.0.1:%d/far/items'", remote.Port),
		"CREATE TABLE d.c_file (id INT NOT NULL, v VARCHAR(10) NOT NULL) ENGINE=CONNECT TABLE_TYPE=CSV FILE_NAME='" + outside + "'",
		"CREATE TABLE d.c_inward (id INT NOT NULL, v VARCHAR(10) NOT NULL) ENGINE=CONNECT TABLE_TYPE=CSV",
		"INSERT INTO d.c_inward VALUES (1, 'in'), (2, 'side')",
	}
	for _, q := range append([]string{
		"INSTALL SONAME 'ha_federatedx'",
		"CREATE DATABASE d",
		"CREATE TABLE d.m1 (id INT NOT NULL, KEY (id)) ENGINE=MyISAM",
		"CREATE TABLE d.m2 (id INT NOT NULL, KEY (id)) ENGINE=MyISAM",
		"INSERT INTO d.m1 VALUES (1), (2)",
		"INSERT INTO d.m2 VALUES (3)",
		"CREATE TABLE d.all_m (id INT NOT NULL, KEY (id)) ENGINE=MRG_MyISAM UNION=(d.m1, d.m2) INSERT_METHOD=LAST",
		link,
	}, connect...) {
		p.Exec(t, q)
	}
	if got := p.QueryString(t, "SELECT COUNT(*) FROM d.fed"); got != "3" {
		t.Fatalf("the FEDERATED table reads %s rows", got)
	}
	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.DefinitionOnly, ", "); got != "d.all_m (MRG_MyISAM), d.c_file (CONNECT), d.c_remote (CONNECT), d.fed (FEDERATED)" {
		t.Errorf("definition_only: %s", got)
	}
	if tb := findTable(m, "d", "c_inward"); tb == nil || len(tb.Chunks) != 1 || tb.Chunks[0].Rows != 2 {
		t.Errorf("d.c_inward in the manifest: %+v", tb)
	}
	for _, name := range []string{"all_m", "fed", "c_remote", "c_file"} {
		if tb := findTable(m, "d", name); tb == nil || len(tb.Chunks) != 0 || tb.Schema == "" {
			t.Errorf("d.%s in the manifest: %+v", name, tb)
		}
	}
	// A target without the FEDERATED plugin is refused, with the way out.
	bare := mariadbtest.Start(t, mariadbtest.Options{ServerID: 4, NoBinlog: true})
	if err := Load(ctx, bare.DB(t), dir, m, LoadOptions{Threads: 2}); err == nil || !strings.Contains(err.Error(), "INSTALL SONAME 'ha_federatedx'") {
		t.Fatalf("load into a target without FEDERATED: %v", err)
	}
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	target.Exec(t, "INSTALL SONAME 'ha_federatedx'")
	target.Exec(t, "INSTALL SONAME 'ha_connect'")
	if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true}); err != nil {
		t.Fatal(err)
	}
	if got := target.QueryString(t, "SELECT GROUP_CONCAT(id ORDER BY id) FROM d.all_m"); got != "1,2,3" {
		t.Errorf("the restored MERGE table has %s", got)
	}
	if got := remote.QueryString(t, "SELECT COUNT(*) FROM far.items"); got != "3" {
		t.Errorf("the FEDERATED table's remote table has %s rows after the load, 3 before", got)
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM d.fed"); got != "3" {
		t.Errorf("the restored FEDERATED table reads %s rows", got)
	}
	if got := remote.QueryString(t, "SELECT COUNT(*) FROM far.items"); got != "3" {
		t.Errorf("the CONNECT MYSQL table's remote table has %s rows after the load, 3 before", got)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "7,x\n8,y\n" {
		t.Errorf("the CONNECT table's outside file after the load: %q, %v", b, err)
	}
	if got := target.QueryString(t, "SELECT GROUP_CONCAT(id, v ORDER BY id) FROM d.c_inward"); got != "1in,2side" {
		t.Errorf("the restored inward CONNECT table has %q", got)
	}
}

// TestEventNamedTimeZone: an event created in a named time zone
// (Europe/Berlin, from the source's time zone tables) keeps it on a target
// that has the zone, and on a target without time zone tables (a fresh
// mariadb-install-db) is created in the target's time zone with a warning
// naming the zone, instead of failing the restore at its end.
func TestEventNamedTimeZone(t *testing.T) {
	ctx := context.Background()
	tz, err := exec.Command("mariadb-tzinfo-to-sql", "/usr/share/zoneinfo/Europe/Berlin", "Europe/Berlin").Output()
	if err != nil {
		t.Fatalf("mariadb-tzinfo-to-sql (package mariadb-server): %v", err)
	}
	p := mariadbtest.Start(t, mariadbtest.Options{})
	p.Exec(t, "USE mysql; "+string(tz))
	p.Exec(t, "CREATE DATABASE e")
	p.Exec(t, "SET time_zone = 'Europe/Berlin'; CREATE EVENT e.nightly ON SCHEDULE EVERY 1 DAY STARTS '2030-06-01 03:00:00' DISABLE DO SELECT 1; SET time_zone = DEFAULT")
	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	withZone := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	withZone.Exec(t, "USE mysql; "+string(tz))
	bare := mariadbtest.Start(t, mariadbtest.Options{ServerID: 3, NoBinlog: true})
	for _, target := range []*mariadbtest.Server{withZone, bare} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Log: log}); err != nil {
			t.Fatalf("port %d: %v", target.Port, err)
		}
		zone := target.QueryString(t, "SELECT TIME_ZONE FROM information_schema.EVENTS WHERE EVENT_NAME = 'nightly'")
		warned := strings.Contains(logs.String(), "time_zone=Europe/Berlin")
		if target == withZone && (zone != "Europe/Berlin" || warned) {
			t.Errorf("a target with the zone: the event's zone %s, warned %v", zone, warned)
		}
		if target == bare && (zone == "Europe/Berlin" || !warned) {
			t.Errorf("a target without time zone tables: the event's zone %s, warned %v: %s", zone, warned, logs.String())
		}
	}
}
