package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

// TestReplicaCommands follows a DBA through the life of a backup replica
// with the commands as a user types them: two primaries (one with a
// sequence and a system-versioned table, one that has purged the binlogs
// since its snapshot) archived and served by `understudy run`; a stock
// MariaDB install as the target; provision killed with SIGKILL and run
// again; the replica follows both live and equals them; check says equal,
// then names the row changed behind replication's back; a target with its
// own tables is refused; promote rehearses a failover.
func TestReplicaCommands(t *testing.T) {
	t.Setenv("UNDERSTUDY_TARGET_PASSWORD", "")
	p1, p2 := startPrimary(t, 1, 1), startPrimary(t, 2, 2)
	for _, p := range []*mariadbtest.Server{p1, p2} {
		p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	}
	p1.Exec(t, "CREATE DATABASE shop")
	p1.Exec(t, "CREATE SEQUENCE shop.ids START WITH 100")
	p1.Exec(t, "CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20), n INT DEFAULT (NEXT VALUE FOR shop.ids))")
	p1.Exec(t, "CREATE TABLE shop.prices (id INT PRIMARY KEY, price INT) WITH SYSTEM VERSIONING")
	p1.Exec(t, "INSERT INTO shop.t (id, v) SELECT seq, 'first' FROM shop.seq_1_to_300")
	p1.Exec(t, "INSERT INTO shop.prices SELECT seq, seq * 10 FROM shop.seq_1_to_50")
	p2.Exec(t, "CREATE DATABASE crm")
	p2.Exec(t, "CREATE TABLE crm.c (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(20))")
	p2.Exec(t, "INSERT INTO crm.c (name) SELECT CONCAT('c', seq) FROM crm.seq_1_to_200")

	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "one", p: p1, serverID: 9001, serve: freeAddr(t)}, testSource{name: "two", p: p2, serverID: 9002, serve: freeAddr(t)})
	startRun(t, cfg)
	for _, s := range []struct {
		name string
		p    *mariadbtest.Server
	}{{"one", p1}, {"two", p2}} {
		waitArchived(t, filepath.Join(dir, "archive", s.name), s.p, 30*time.Second)
		var so, se strings.Builder
		if code := run([]string{"snapshot", "--config", cfg, "--source", s.name, "--threads", "2"}, &so, &se); code != exitOK {
			t.Fatalf("snapshot of %s: exit %d: %s", s.name, code, se.String())
		}
		if l, _ := snapshot.List(filepath.Join(dir, "archive", s.name, "snapshots")); len(l) != 1 {
			t.Fatalf("%d snapshots of %s", len(l), s.name)
		}
	}
	// After the snapshots: more writes, then p1 purges its binlogs.
	p1.Exec(t, "UPDATE shop.t SET v = 'second' WHERE id % 3 = 0")
	p1.Exec(t, "UPDATE shop.prices SET price = price + 1 WHERE id < 10")
	p1.Exec(t, "INSERT INTO shop.t (id, v) VALUES (1000, 'after')")
	p2.Exec(t, "DELETE FROM crm.c WHERE id % 5 = 0")
	waitArchived(t, filepath.Join(dir, "archive", "one"), p1, 30*time.Second)
	p1.PurgeBinlogs(t)

	target := mariadbtest.Start(t, mariadbtest.Options{Stock: true, ServerID: 700, DomainID: 70,
		Args: []string{"--log-slave-updates", "--gtid-strict-mode=1", "--read-only=1"}})
	targetAddr := fmt.Sprintf("root@127.0.0.1:%d", target.Port)
	provision := []string{"provision", "--config", cfg, "--source", "one", "--source", "two", "--target", targetAddr, "--threads", "2"}

	t.Run("a target with tables of its own is refused", func(t *testing.T) {
		other := mariadbtest.Start(t, mariadbtest.Options{Stock: true, ServerID: 701})
		other.Exec(t, "CREATE DATABASE crm")
		other.Exec(t, "CREATE TABLE crm.mine (id INT PRIMARY KEY)")
		args := append([]string{}, provision...)
		args[len(args)-3] = fmt.Sprintf("root@127.0.0.1:%d", other.Port)
		var so, se strings.Builder
		if code := run(args, &so, &se); code != exitError || !strings.Contains(se.String(), "already has databases crm") || strings.Count(se.String(), "\n") != 1 {
			t.Fatalf("provision into a target with crm.mine: exit %d, %q", code, se.String())
		}
		if other.QueryString(t, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ('crm', 'shop')") != "1" {
			t.Fatal("the refused target was changed")
		}
	})

	// Interrupted with ^C: its own exit status. Then kill -9 in the
	// middle, then the same command again.
	cmd := exec.Command(binary, provision...)
	cmd.Env = append(os.Environ(), "UNDERSTUDY_TARGET_PASSWORD=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != exitInterrupted {
		t.Fatalf("provision interrupted by SIGINT: %v, exit %d; want %d", err, cmd.ProcessState.ExitCode(), exitInterrupted)
	}
	cmd = exec.Command(binary, provision...)
	cmd.Env = append(os.Environ(), "UNDERSTUDY_TARGET_PASSWORD=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	var so, se strings.Builder
	if code := run(provision, &so, &se); code != exitOK {
		t.Fatalf("provision after kill -9: exit %d: %s", code, se.String())
	}
	t.Log(so.String())
	if !strings.Contains(so.String(), "is a live replica of 2 sources") || !strings.Contains(so.String(), "Slave_SQL_Running: Yes") {
		t.Fatalf("provision said %q", so.String())
	}

	// Live: new writes reach it, and it equals both primaries.
	p1.Exec(t, "INSERT INTO shop.t (id, v) VALUES (1001, 'live')")
	p2.Exec(t, "INSERT INTO crm.c (name) VALUES ('live')")
	waitReplica(t, target, "one", p1.GTIDBinlogPos(t), 30*time.Second)
	waitReplica(t, target, "two", p2.GTIDBinlogPos(t), 30*time.Second)
	sameChecksums(t, p1, target, "shop")
	sameChecksums(t, p2, target, "crm")

	check := []string{"check", "--config", cfg, "--source", "one", "--target", targetAddr, "--threads", "2"}
	so.Reset()
	se.Reset()
	if code := run(check, &so, &se); code != exitOK || !strings.Contains(so.String(), ": equal to ") {
		t.Fatalf("check of a good replica: exit %d, %q %q", code, so.String(), se.String())
	}
	t.Log(so.String())
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR UPDATE shop.t SET v = 'drift' WHERE id = 7")
	so.Reset()
	se.Reset()
	if code := run(check, &so, &se); code != exitProblem || !strings.Contains(so.String(), "shop.t (primary key)") || !strings.Contains(so.String(), "changed (7)") {
		t.Fatalf("check of a drifted replica: exit %d, %q %q", code, so.String(), se.String())
	}
	t.Log(so.String())
	so.Reset()
	se.Reset()
	if code := run(append(check, "--against", "primary"), &so, &se); code != exitProblem || !strings.Contains(so.String(), "changed (7)") || !strings.Contains(so.String(), "the primary 127.0.0.1:") {
		t.Fatalf("check --against primary of a drifted replica: exit %d, %q %q", code, so.String(), se.String())
	}
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR UPDATE shop.t SET v = 'first' WHERE id = 7")

	// A failover rehearsal for source one.
	promote := []string{"promote", "--config", cfg, "--source", "one", "--target", targetAddr}
	so.Reset()
	if code := run(append(promote, "--dry-run"), &so, &se); code != exitOK || !strings.Contains(so.String(), "would") || replicaStatus(t, target, "one") == nil {
		t.Fatalf("promote --dry-run: exit %d, %q; connection %v", code, so.String(), replicaStatus(t, target, "one"))
	}
	t.Log(so.String())
	so.Reset()
	if code := run(promote, &so, &se); code != exitOK || !strings.Contains(so.String(), "promoted") {
		t.Fatalf("promote: exit %d, %q %q", code, so.String(), se.String())
	}
	t.Log(so.String())
	if replicaStatus(t, target, "one") != nil || replicaStatus(t, target, "two") == nil {
		t.Fatal("promote must remove source one's connection and keep two's")
	}
	if target.QueryString(t, "SELECT @@global.read_only") != "0" || target.QueryString(t, "SELECT @@global.gtid_domain_id") != "1" {
		t.Fatal("the promoted replica is still read-only, or writes outside source one's domain")
	}
}
