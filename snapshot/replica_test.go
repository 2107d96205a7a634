package snapshot

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/replication"
)

// primaryDomain is the GTID domain of the primaries these tests replicate.
const primaryDomain = 4

// startPrimary starts a primary in primaryDomain with a replication user
// repl (password pw) and a table with a few rows.
func startPrimary(t *testing.T) *mariadbtest.Server {
	t.Helper()
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, DomainID: primaryDomain})
	p.Exec(t, "CREATE USER repl@'%' IDENTIFIED BY 'pw'")
	p.Exec(t, "GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE TABLE d.t (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO d.t VALUES (1), (2), (3)")
	return p
}

// replicate makes r replicate p on connection name and waits until it has
// caught up.
func replicate(t *testing.T, r, p *mariadbtest.Server, name string) {
	t.Helper()
	r.Exec(t, fmt.Sprintf("CHANGE MASTER '%s' TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='repl', MASTER_PASSWORD='pw', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1", name, p.Port))
	r.Exec(t, fmt.Sprintf("START SLAVE '%s'", name))
	want := p.GTIDBinlogPos(t)
	deadline := time.Now().Add(30 * time.Second)
	for r.QueryString(t, "SELECT @@global.gtid_slave_pos") != want {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not reach %s in 30s: gtid_slave_pos %s", want, r.QueryString(t, "SELECT @@global.gtid_slave_pos"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slaveStatus returns a column of SHOW SLAVE 'name' STATUS.
func slaveStatus(t *testing.T, r *mariadbtest.Server, name, column string) string {
	t.Helper()
	rows, err := r.DB(t).Query(fmt.Sprintf("SHOW SLAVE '%s' STATUS", name))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		t.Fatalf("SHOW SLAVE '%s' STATUS: no row", name)
	}
	vals := make([]sql.NullString, len(cols))
	dest := make([]any, len(cols))
	for i := range vals {
		dest[i] = &vals[i]
	}
	if err := rows.Scan(dest...); err != nil {
		t.Fatal(err)
	}
	for i, c := range cols {
		if c == column {
			return vals[i].String
		}
	}
	t.Fatalf("SHOW SLAVE STATUS has no column %s", column)
	return ""
}

// TestTakeFromReplicaChecks: a snapshot is taken from a replica only while
// the replication connection that carries the source runs both threads and
// is at most MaxLag behind. Otherwise it is refused with one line naming the
// replica, the connection and its state or lag; nothing is written.
func TestTakeFromReplicaChecks(t *testing.T) {
	ctx := context.Background()
	p := startPrimary(t)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2})
	replicate(t, r, p, "a")
	from := fmt.Sprintf("127.0.0.1:%d", r.Port)
	primary := fmt.Sprintf("127.0.0.1:%d", p.Port)
	root := t.TempDir()
	take := func(o Options) error {
		t.Helper()
		o.Source, o.DB, o.From, o.FromReplica, o.Domains, o.Root, o.Threads = "s", r.DB(t), from, true, []uint32{primaryDomain}, root, 1
		m, _, err := Take(ctx, o)
		if err == nil && (!m.FromReplica || m.Position.String() != p.GTIDBinlogPos(t) || m.Rows() != 3) {
			t.Fatalf("snapshot from the replica: position %s rows %d, want %s and 3 rows", m.Position, m.Rows(), p.GTIDBinlogPos(t))
		}
		return err
	}
	refused := func(what string, o Options, want ...string) {
		t.Helper()
		err := take(o)
		if err == nil {
			t.Fatalf("%s: snapshot taken, want it refused", what)
		}
		msg := err.Error()
		for _, w := range append(want, "replica "+from) {
			if !strings.Contains(msg, w) {
				t.Fatalf("%s: refused with %q, want it to say %q", what, msg, w)
			}
		}
		if strings.Contains(msg, "\n") {
			t.Fatalf("%s: the refusal is not one line: %q", what, msg)
		}
		t.Logf("%s: %v", what, err)
	}

	// A second connection, stopped, that replicates something else from
	// another address. Told which address the source is at, Take checks the
	// connection to it only; not told, every connection.
	r.Exec(t, "CHANGE MASTER 'other' TO MASTER_HOST='127.0.0.1', MASTER_PORT=1, MASTER_USER='repl', MASTER_USE_GTID=slave_pos")
	if err := take(Options{SourceAddrs: []string{primary}}); err != nil {
		t.Fatalf("running replica, the source's connection picked by address: %v", err)
	}
	refused("a stopped connection and no source address to tell it from the source's", Options{},
		"not replicating on connection 'other'", "Slave_IO_Running=No, Slave_SQL_Running=No")
	// A connection whose domain filter keeps the source's domain out does
	// not carry the source.
	r.Exec(t, "CHANGE MASTER 'other' TO DO_DOMAIN_IDS=(77)")
	if err := take(Options{}); err != nil {
		t.Fatalf("running replica, the other connection filtered to another domain: %v", err)
	}
	r.Exec(t, "RESET SLAVE 'other' ALL")

	// The SQL thread stopped: the data stops changing at some position.
	r.Exec(t, "STOP SLAVE 'a' SQL_THREAD")
	refused("SQL thread stopped", Options{SourceAddrs: []string{primary}},
		"not replicating on connection 'a'", "Slave_IO_Running=Yes, Slave_SQL_Running=No")
	// Both stopped.
	r.Exec(t, "STOP SLAVE 'a'")
	refused("replication stopped", Options{}, "not replicating on connection 'a'", "Slave_IO_Running=No, Slave_SQL_Running=No")

	// Running, but delayed by an hour: more behind than allowed. The SQL
	// thread waits for the first event, whose age is the lag.
	r.Exec(t, "CHANGE MASTER 'a' TO MASTER_DELAY=3600")
	r.Exec(t, "START SLAVE 'a'")
	p.Exec(t, "INSERT INTO d.t VALUES (4)")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b := slaveStatus(t, r, "a", "Seconds_Behind_Master"); b != "" && b != "0" && b != "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Seconds_Behind_Master still %q after 30s with MASTER_DELAY", slaveStatus(t, r, "a", "Seconds_Behind_Master"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	refused("lagging replica", Options{MaxLag: time.Second}, "behind its primary on connection 'a'", "more than the 1s allowed")
	// No replication connection left at all.
	r.Exec(t, "STOP SLAVE 'a'")
	r.Exec(t, "RESET SLAVE 'a' ALL")
	refused("no replication connection", Options{}, "has no replication connection")

	if list, err := List(root); err != nil || len(list) != 2 {
		t.Fatalf("%d snapshots listed (%v), want the 2 taken", len(list), err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "*.partial")); len(left) > 0 {
		t.Fatalf("refused snapshots left %v", left)
	}
}

// TestTakeFromReplicaGrant: reading the replica's replication state needs
// SLAVE MONITOR, and a snapshot user without it is told so before anything
// is read.
func TestTakeFromReplicaGrant(t *testing.T) {
	p := startPrimary(t)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2})
	replicate(t, r, p, "a")
	r.Exec(t, "CREATE USER snap@'%' IDENTIFIED BY 'pw'")
	r.Exec(t, "GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO snap@'%'")
	take := func() error {
		// A new pool each time: global grants apply to new sessions.
		db, err := sql.Open("mysql", fmt.Sprintf("snap:pw@tcp(127.0.0.1:%d)/", r.Port))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		_, _, err = Take(context.Background(), Options{Source: "s", DB: db, From: fmt.Sprintf("127.0.0.1:%d", r.Port), FromReplica: true,
			Domains: []uint32{primaryDomain}, Root: t.TempDir(), Threads: 1})
		return err
	}
	if err := take(); err == nil || !strings.Contains(err.Error(), "lacks SLAVE MONITOR: run GRANT SLAVE MONITOR ON *.*") {
		t.Fatalf("snapshot user without SLAVE MONITOR: %v, want it named", err)
	}
	r.Exec(t, "GRANT SLAVE MONITOR ON *.* TO snap@'%'")
	if err := take(); err != nil {
		t.Fatalf("with SLAVE MONITOR: %v", err)
	}
}

// TestTakeFromReplicaTLS: snapshot.from has TLS settings of its own and
// never the source's. The source's tls block names a CA the replica's
// certificate does not verify against: snapshot.from without a tls block
// connects without TLS regardless; with its own block, with TLS verified by
// its own CA.
func TestTakeFromReplicaTLS(t *testing.T) {
	certs := t.TempDir()
	ca, caKey := mariadbtest.WriteCert(t, certs, "ca", nil, nil)
	mariadbtest.WriteCert(t, certs, "server", ca, caKey)
	mariadbtest.WriteCert(t, certs, "other-ca", nil, nil)
	p := startPrimary(t)
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, Args: []string{
		"--ssl-ca=" + filepath.Join(certs, "ca.pem"), "--ssl-cert=" + filepath.Join(certs, "server.pem"), "--ssl-key=" + filepath.Join(certs, "server.key"),
	}})
	replicate(t, r, p, "a")
	const grants = "SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT, SLAVE MONITOR"
	r.Exec(t, "CREATE USER plain@'%' IDENTIFIED BY 'pw'")
	r.Exec(t, "GRANT "+grants+" ON *.* TO plain@'%'")
	r.Exec(t, "CREATE USER secure@'%' IDENTIFIED BY 'pw' REQUIRE SSL")
	r.Exec(t, "GRANT "+grants+" ON *.* TO secure@'%'")

	take := func(from string) (cipher string, err error) {
		t.Helper()
		path := filepath.Join(certs, "understudy.yaml")
		y := fmt.Sprintf(`archive:
  dir: archive
sources:
  - name: db
    host: 127.0.0.1
    port: %d
    user: repl
    password: pw
    server_id: 9001
    tls:
      ca: other-ca.pem
    snapshot:
      from:
        host: 127.0.0.1
        port: %d
        password: pw
%s`, p.Port, r.Port, from)
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := cfg.ResolveSnapshot(&cfg.Sources[0])
		if err != nil {
			t.Fatal(err)
		}
		db, err := replication.Open(st.Conn, "")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		o := Options{Source: "db", DB: db, From: st.Conn.Addr(), FromReplica: st.FromReplica, Domains: []uint32{primaryDomain},
			SourceAddrs: []string{fmt.Sprintf("127.0.0.1:%d", p.Port)}, MaxLag: st.MaxLag, Root: cfg.SnapshotDir("db"), Threads: 1}
		if _, _, err := Take(context.Background(), o); err != nil {
			return "", err
		}
		var name string
		if err := db.QueryRow("SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil {
			t.Fatal(err)
		}
		return cipher, nil
	}

	cipher, err := take("        user: plain\n")
	if err != nil {
		t.Fatalf("snapshot.from without a tls block: %v (the source's TLS must not apply to the replica)", err)
	}
	if cipher != "" {
		t.Fatalf("snapshot.from without a tls block connected with TLS (%s)", cipher)
	}
	cipher, err = take("        user: secure\n        tls:\n          ca: ca.pem\n")
	if err != nil {
		t.Fatalf("snapshot.from with its own tls block: %v", err)
	}
	if cipher == "" {
		t.Fatal("snapshot.from with its own tls block connected without TLS")
	}
	t.Logf("snapshot.from with its own tls block: cipher %s", cipher)
	if _, err := take("        user: secure\n        tls:\n          ca: other-ca.pem\n"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("snapshot.from with a CA that does not sign the replica's certificate: %v, want a certificate error", err)
	}
}
