package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/events"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

// findEvent runs `understudy events --grep` and returns the one GTID found.
func findEvent(t *testing.T, cfg, grep string) string {
	t.Helper()
	var so, se strings.Builder
	if code := run([]string{"events", "--config", cfg, "--source", "db", "--grep", grep, "--json"}, &so, &se); code != 0 {
		t.Fatalf("events exited %d: %s", code, se.String())
	}
	var found []events.Transaction
	for _, line := range strings.Split(strings.TrimSpace(so.String()), "\n") {
		if line == "" {
			continue
		}
		var tx events.Transaction
		if err := json.Unmarshal([]byte(line), &tx); err != nil {
			t.Fatalf("events --json line %q: %v", line, err)
		}
		found = append(found, tx)
	}
	if len(found) != 1 {
		t.Fatalf("events --grep %q found %d transactions: %s", grep, len(found), so.String())
	}
	t.Logf("events --grep %q: %s %s %s %v %s", grep, found[0].GTID, found[0].Kind, found[0].Database, found[0].Statements, found[0].Summary())
	return found[0].GTID
}

func restoreInto(t *testing.T, cfg string, target *mariadbtest.Server, args ...string) string {
	t.Helper()
	t.Setenv("UNDERSTUDY_TARGET_PASSWORD", "")
	var so, se strings.Builder
	all := append([]string{"restore", "--config", cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port), "--threads", "2"}, args...)
	if code := run(all, &so, &se); code != 0 {
		t.Fatalf("restore %v exited %d: %s", args, code, se.String())
	}
	t.Log(strings.TrimSpace(so.String()))
	return so.String()
}

// TestAccidentRestore runs the accident end to end: a steady workload, a
// snapshot, more workload, a DELETE without WHERE, more workload, a DROP
// DATABASE, more workload. events --grep finds the bad GTIDs, and restores
// to just before each, to a GTID and to a time are exact.
func TestAccidentRestore(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	stop := startRun(t, cfg)
	load := func(seed int64, d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		workload(ctx, t, p, "app", seed)
	}
	load(1, 1500*time.Millisecond)
	takeSnapshotCmd(t, cfg)
	load(2, 1500*time.Millisecond)
	time.Sleep(1100 * time.Millisecond)
	beforeDelete, posBeforeDelete := p.Checksums(t, "app"), p.GTIDBinlogPos(t)
	atBeforeDelete := time.Now().UTC().Truncate(time.Second)
	time.Sleep(1100 * time.Millisecond)
	p.Exec(t, "DELETE FROM app.t")
	load(3, time.Second)
	beforeDrop := p.Checksums(t, "app")
	p.Exec(t, "DROP DATABASE app")
	p.Exec(t, "CREATE DATABASE other")
	p.Exec(t, "CREATE TABLE other.x (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO other.x VALUES (1)")
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()

	del := findEvent(t, cfg, `delete from app\.t$`)
	drop := findEvent(t, cfg, "drop database")

	t.Run("before the DELETE", func(t *testing.T) {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		restoreInto(t, cfg, target, "--before-gtid", del)
		checksumsEqual(t, beforeDelete, target.Checksums(t, "app"), "restore before the DELETE")
		if got := target.QueryString(t, "SELECT @@gtid_slave_pos"); got != posBeforeDelete {
			t.Fatalf("target gtid_slave_pos %s, want %s", got, posBeforeDelete)
		}
		if st := replicaStatus(t, target, "understudy_restore"); st != nil {
			t.Fatalf("the target kept the replication connection: %v", st)
		}
	})
	for _, tc := range []struct {
		name, flag, value string
		want              map[string]string
	}{
		{"until GTID", "--until-gtid", posBeforeDelete, beforeDelete},
		{"until time", "--until-time", atBeforeDelete.Format(time.RFC3339), beforeDelete},
		{"before the DROP DATABASE", "--before-gtid", drop, beforeDrop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
			restoreInto(t, cfg, target, tc.flag, tc.value)
			checksumsEqual(t, tc.want, target.Checksums(t, "app"), "restore "+tc.name)
		})
	}
	t.Run("killed and run again", func(t *testing.T) {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		args := []string{"restore", "--config", cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port), "--before-gtid", drop}
		for _, after := range []time.Duration{150 * time.Millisecond, 350 * time.Millisecond} {
			cmd := exec.Command(binary, args...)
			cmd.Env = append(os.Environ(), "UNDERSTUDY_TARGET_PASSWORD=")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(after)
			cmd.Process.Kill()
			cmd.Wait()
		}
		restoreInto(t, cfg, target, "--before-gtid", drop)
		checksumsEqual(t, beforeDrop, target.Checksums(t, "app"), "restore run again after kill -9")
		// The same command once more, after it completed, redoes it all.
		restoreInto(t, cfg, target, "--before-gtid", drop)
		checksumsEqual(t, beforeDrop, target.Checksums(t, "app"), "restore run again after it completed")
	})
	t.Run("to the snapshot position, verified", func(t *testing.T) {
		list, _ := snapshot.List(filepath.Join(dir, "archive", "db", "snapshots"))
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		out := restoreInto(t, cfg, target, "--until-gtid", list[0].Manifest.Position.String())
		if !strings.Contains(out, "verified:") || !strings.Contains(out, "chunk checksums equal the snapshot's") {
			t.Fatalf("restore to the snapshot's position did not verify: %s", out)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
		target.Exec(t, "CREATE DATABASE app")
		target.Exec(t, "CREATE TABLE app.keep (id INT)")
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--before-gtid", drop}, "already has databases app"},
			{[]string{"--until-gtid", "1-1-99999999"}, "beyond the archive"},
			{[]string{"--before-gtid", "1-1-1"}, "older than the oldest snapshot"},
			{[]string{"--until-time", "2001-01-01T00:00:00Z"}, "older than the oldest snapshot"},
		} {
			var so, se strings.Builder
			all := append([]string{"restore", "--config", cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port)}, tc.args...)
			if code := run(all, &so, &se); code == 0 || !strings.Contains(se.String(), tc.want) {
				t.Fatalf("restore %v: exit %d, %q; want an error about %q", tc.args, code, se.String(), tc.want)
			}
			t.Log(strings.TrimSpace(se.String()))
		}
		if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='app'"); got != "1" {
			t.Fatalf("a refused restore changed the target: %s tables in app", got)
		}
	})
}

// TestRestoreRemoteTarget runs the README's restore into a target on
// another host: no --listen, no --advertise, the password from
// $UNDERSTUDY_TARGET_PASSWORD. The target is reached at an address of this
// host other than 127.0.0.1: its first non-loopback address (a host like
// any other, to restore), or ::1 on a host with loopback only. The binlog
// server that feeds the target listens on the address that faces the
// target, and the target connects there.
func TestRestoreRemoteTarget(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	stop := startRun(t, cfg)
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v INT)")
	p.Exec(t, "INSERT INTO app.t SELECT seq, seq FROM app.seq_1_to_100")
	takeSnapshotCmd(t, cfg)
	p.Exec(t, "UPDATE app.t SET v = v + 1 WHERE id <= 50")
	p.Exec(t, "INSERT INTO app.t VALUES (1000, 1)")
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()

	host := otherLocalAddress(t)
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true, Args: []string{"--bind-address=127.0.0.1," + host}})
	target.Exec(t, "CREATE USER 'restorer'@'"+host+"' IDENTIFIED BY 'restorer-pw'")
	target.Exec(t, "GRANT ALL PRIVILEGES ON *.* TO 'restorer'@'"+host+"' WITH GRANT OPTION")
	addr := net.JoinHostPort(host, strconv.Itoa(target.Port))
	c, err := net.Dial("udp", addr) // the route to the target, found apart from restore
	if err != nil {
		t.Fatal(err)
	}
	facing := c.LocalAddr().(*net.UDPAddr).IP.String()
	c.Close()
	if facing == "127.0.0.1" {
		t.Fatalf("the address facing %s is 127.0.0.1: this test would prove nothing", addr)
	}

	t.Setenv("UNDERSTUDY_TARGET_PASSWORD", "restorer-pw")
	var so, se strings.Builder
	args := []string{"restore", "--config", cfg, "--source", "db", "--target", "restorer@" + addr}
	if code := run(args, &so, &se); code != exitOK {
		t.Fatalf("understudy %s: exit %d: %s", strings.Join(args, " "), code, se.String())
	}
	t.Log(strings.TrimSpace(so.String()))
	checksumsEqual(t, p.Checksums(t, "app"), target.Checksums(t, "app"), "restore into "+addr)
	listened := regexp.MustCompile(`msg="serving the archive to replicas" .*?\baddr=(\S+)`).FindStringSubmatch(se.String())
	told := regexp.MustCompile(`msg="binlog server for the target" .*?\bmaster_host=(\S+)`).FindStringSubmatch(se.String())
	if listened == nil || told == nil {
		t.Fatalf("restore did not log where its binlog server listens and where the target connects:\n%s", se.String())
	}
	if h, _, _ := net.SplitHostPort(listened[1]); h != facing || told[1] != facing {
		t.Fatalf("the binlog server listened on %s and the target was told %s; want both on %s, the address facing the target", listened[1], told[1], facing)
	}
}

// otherLocalAddress returns an address of this host, other than 127.0.0.1,
// for a target to listen on: its first non-loopback IPv4 address, else ::1.
func otherLocalAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return "::1"
}

// TestVerify checks a healthy archive and snapshot, then finds a flipped
// byte in each.
func TestVerify(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	stop := startRun(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	workload(ctx, t, p, "app", 11)
	cancel()
	m := takeSnapshotCmd(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()
	verify := func() (int, string) {
		var so, se strings.Builder
		code := run([]string{"verify", "--config", cfg, "--source", "db"}, &so, &se)
		return code, so.String() + se.String()
	}
	if code, out := verify(); code != exitOK {
		t.Fatalf("verify of a healthy archive: %d: %s", code, out)
	}
	mariadbtest.FlipByte(t, filepath.Join(dir, "archive", "db", "binlog.000001"), 5000)
	list, _ := snapshot.List(filepath.Join(dir, "archive", "db", "snapshots"))
	chunk := filepath.Join(list[0].Dir, m.Databases[0].Tables[0].Chunks[0].File)
	st, err := os.Stat(chunk)
	if err != nil {
		t.Fatal(err)
	}
	mariadbtest.FlipByte(t, chunk, min(20, st.Size()-1))
	code, out := verify()
	t.Log(out)
	if code != exitProblem || !strings.Contains(out, "binlog.000001") || !strings.Contains(out, m.Databases[0].Tables[0].Chunks[0].File) {
		t.Fatalf("verify missed the corruption: exit %d: %s", code, out)
	}
}

// TestRestoreDatabases restores one database of two, snapshot plus replay.
func TestRestoreDatabases(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	stop := startRun(t, cfg)
	for _, db := range []string{"a", "b"} {
		p.Exec(t, "CREATE DATABASE "+db)
		p.Exec(t, "CREATE TABLE "+db+".t (id INT PRIMARY KEY, v INT)")
		p.Exec(t, "INSERT INTO "+db+".t SELECT seq, seq FROM "+db+".seq_1_to_100")
	}
	takeSnapshotCmd(t, cfg)
	p.Exec(t, "UPDATE a.t SET v = v + 1 WHERE id <= 50")
	p.Exec(t, "UPDATE b.t SET v = v + 1")
	p.Exec(t, "INSERT INTO a.t VALUES (1000, 1)")
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
	restoreInto(t, cfg, target, "--databases", "a")
	checksumsEqual(t, p.Checksums(t, "a"), target.Checksums(t, "a"), "restore of database a")
	if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'b'"); got != "0" {
		t.Fatal("database b was restored too")
	}
	if got, want := target.QueryString(t, "SELECT @@gtid_slave_pos"), p.GTIDBinlogPos(t); got != want {
		t.Fatalf("gtid_slave_pos %s, want %s", got, want)
	}
}

// TestRestoreUsers saves accounts, roles and grants with a snapshot and
// restores them with --users; a grant made after the snapshot comes with
// the replay. A snapshot without them refuses --users.
func TestRestoreUsers(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	stop := startRun(t, cfg)
	p.Exec(t, "CREATE DATABASE a")
	p.Exec(t, "CREATE TABLE a.t (id INT PRIMARY KEY, v INT)")
	p.Exec(t, "INSERT INTO a.t SELECT seq, seq FROM a.seq_1_to_10")
	takeSnapshotCmd(t, cfg) // without users
	p.Exec(t, "CREATE ROLE reader")
	p.Exec(t, "GRANT SELECT ON a.* TO reader")
	p.Exec(t, "CREATE USER 'app'@'%' IDENTIFIED BY 'app-pw'")
	p.Exec(t, "GRANT reader TO 'app'@'%'")
	p.Exec(t, "SET DEFAULT ROLE reader FOR 'app'@'%'")
	p.Exec(t, "GRANT UPDATE (v) ON a.t TO 'app'@'%'")
	p.Exec(t, `CREATE USER 'o''b\\rien'@'10.0.%' IDENTIFIED BY 'x' WITH MAX_USER_CONNECTIONS 5`) // o'b\rien
	p.Exec(t, "CREATE USER 'keep'@'%' IDENTIFIED BY 'source-pw'")
	p.Exec(t, "GRANT ALL ON a.* TO 'keep'@'%'")
	addSnapshotConfig(t, cfg, "    snapshot:\n      users: true\n")
	m := takeSnapshotCmd(t, cfg)
	if m.Users == "" || m.Accounts < 5 {
		t.Fatalf("snapshot saved %d accounts (%q)", m.Accounts, m.Users)
	}
	snaps, _ := snapshot.List(filepath.Join(dir, "archive", "db", "snapshots"))
	if fi, err := os.Stat(filepath.Join(snaps[len(snaps)-1].Dir, m.Users)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the accounts file (password hashes) must be private: %v %v", fi.Mode(), err)
	}
	p.Exec(t, "GRANT INSERT ON a.* TO 'app'@'%'") // after the snapshot: replayed
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 30*time.Second)
	stop()

	// The older snapshot has no accounts: --users refuses it.
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
	var so, se strings.Builder
	t.Setenv("UNDERSTUDY_TARGET_PASSWORD", "")
	list, _ := snapshot.List(filepath.Join(dir, "archive", "db", "snapshots"))
	code := run([]string{"restore", "--config", cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port),
		"--snapshot", list[0].Manifest.ID, "--users"}, &so, &se)
	if code == 0 || !strings.Contains(se.String(), "without snapshot.users") {
		t.Fatalf("--users with a snapshot without accounts: exit %d: %s", code, se.String())
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'a'"); got != "0" {
		t.Fatal("the refused restore wrote to the target")
	}

	// An account the target already has is left as it is (password and
	// grants), not reset to the snapshot's.
	target.Exec(t, "CREATE USER 'keep'@'%' IDENTIFIED BY 'target-pw'")
	restoreInto(t, cfg, target, "--users")
	login := func(user, pw string) error {
		db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(127.0.0.1:%d)/", user, pw, target.Port))
		if err != nil {
			return err
		}
		defer db.Close()
		return db.Ping()
	}
	if err := login("keep", "target-pw"); err != nil {
		t.Errorf("the target's own account lost its password: %v", err)
	}
	if err := login("keep", "source-pw"); err == nil {
		t.Errorf("the target's own account took the snapshot's password")
	}
	if got := strings.Join(queryStrings(t, target, "SHOW GRANTS FOR 'keep'@'%'"), "\n"); strings.Contains(got, "`a`") {
		t.Errorf("the target's own account took the snapshot's grants: %s", got)
	}
	if got := strings.Join(queryStrings(t, target, "SHOW GRANTS FOR CURRENT_USER"), "\n"); strings.Contains(got, "reader") {
		t.Errorf("the restoring user became a member of a restored role: %s", got)
	}
	for _, who := range []string{"'app'@'%'", "reader", `'o''b\\rien'@'10.0.%'`} {
		q := "SHOW GRANTS FOR " + who
		if got, want := strings.Join(queryStrings(t, target, q), "\n"), strings.Join(queryStrings(t, p, q), "\n"); got != want {
			t.Errorf("%s on the target:\n%s\non the primary:\n%s", q, got, want)
		}
	}
	if got := target.QueryString(t, `SELECT max_user_connections FROM mysql.user WHERE User = 'o''b\\rien'`); got != "5" {
		t.Errorf("o'brien max_user_connections %s, want 5", got)
	}
	// app logs in with its password and reads and writes through its grants.
	app, err := sql.Open("mysql", fmt.Sprintf("app:app-pw@tcp(127.0.0.1:%d)/a", target.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	var n int
	if err := app.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 10 {
		t.Fatalf("app on the target: %d rows, %v", n, err)
	}
	if _, err := app.Exec("INSERT INTO t VALUES (11, 11)"); err != nil {
		t.Fatalf("app on the target: the grant made after the snapshot is missing: %v", err)
	}
}

// queryStrings returns the first column of every row of q on s.
func queryStrings(t *testing.T, s *mariadbtest.Server, q string) []string {
	t.Helper()
	rows, err := s.DB(t).Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}
