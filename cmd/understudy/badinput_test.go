package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archiver"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// runUntilError runs an archiver for src until its status shows an error
// containing want, and returns that status.
func runUntilError(t *testing.T, src understudy.Source, dir string, want string, setup ...func(*archiver.Archiver)) understudy.SourceStatus {
	t.Helper()
	a := archiver.New(src, dir, newLogger(testWriter{t}, false, false), nil)
	a.MaxBackoff = 500 * time.Millisecond
	for _, f := range setup {
		f(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	var st understudy.SourceStatus
	for time.Now().Before(deadline) {
		st = a.Status()
		if strings.Contains(st.LastError, want) {
			if strings.Contains(st.LastError, "\n") {
				t.Fatalf("error is not one line: %q", st.LastError)
			}
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("status never showed %q; last: %+v", want, st)
	return st
}

func testSrc(p *mariadbtest.Server, user, password string, serverID uint32) understudy.Source {
	return understudy.Source{Name: "db", Host: "127.0.0.1", Port: p.Port, User: user, Password: password, ServerID: serverID, Heartbeat: 500 * time.Millisecond}
}

func TestBadInput(t *testing.T) {
	p := startPrimary(t, 1, 0)
	p.CreateUser(t, "nogrant", "pw")
	t.Run("wrong password", func(t *testing.T) {
		st := runUntilError(t, testSrc(p, replUser, "wrong", 9500), t.TempDir(), "wrong user or password")
		if st.State != understudy.StateError {
			t.Fatalf("state %s, want error", st.State)
		}
	})
	t.Run("unreachable host", func(t *testing.T) {
		src := testSrc(p, replUser, replPassword, 9500)
		src.Port = 1 // nothing listens there
		runUntilError(t, src, t.TempDir(), "connection refused")
	})
	t.Run("missing grant", func(t *testing.T) {
		runUntilError(t, testSrc(p, "nogrant", "pw", 9500), t.TempDir(), "GRANT REPLICATION SLAVE ON *.* TO 'nogrant'")
	})
	t.Run("server_id of the primary", func(t *testing.T) {
		runUntilError(t, testSrc(p, replUser, replPassword, 1), t.TempDir(), "the same as understudy's server_id")
	})
	t.Run("binlog disabled", func(t *testing.T) {
		nb := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
		nb.CreateUser(t, replUser, replPassword, "REPLICATION SLAVE ON *.*")
		runUntilError(t, testSrc(nb, replUser, replPassword, 9500), t.TempDir(), "binary logging is disabled")
	})
	t.Run("archive not writable", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o644)
		a := archiver.New(testSrc(p, replUser, replPassword, 9500), filepath.Join(file, "db"), nil, nil)
		err := a.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "is not usable") {
			t.Fatalf("err=%v", err)
		}
	})
	t.Run("archive locked", func(t *testing.T) {
		dir := t.TempDir()
		cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9501})
		startProc(t, cfg)
		time.Sleep(500 * time.Millisecond)
		a := archiver.New(testSrc(p, replUser, replPassword, 9502), filepath.Join(dir, "archive", "db"), nil, nil)
		err := a.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "locked by another process") {
			t.Fatalf("err=%v", err)
		}
	})
	t.Run("statement binlog format and shared domain", func(t *testing.T) {
		sb := startPrimary(t, 3, 0, "--binlog-format=STATEMENT")
		dir := t.TempDir()
		cfg := writeConfig(t, dir, testSource{name: "a", p: p, serverID: 9504}, testSource{name: "b", p: sb, serverID: 9505})
		var logs mariadbtest.LogBuffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := runArchive(ctx, runOptions{config: cfg}, newLogger(&logs, false, false)); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"binlog_format is STATEMENT", "sources share a gtid_domain_id", "sources=\"[a b]\""} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, logs.String())
			}
		}
	})
	t.Run("duplicate server_id in config", func(t *testing.T) {
		dir := t.TempDir()
		cfg := writeConfig(t, dir, testSource{name: "a", p: p, serverID: 9503}, testSource{name: "b", p: p, serverID: 9503})
		var so, se strings.Builder
		if code := run([]string{"run", "--config", cfg}, &so, &se); code != exitError {
			t.Fatalf("exit %d, want %d", code, exitError)
		}
		if got := se.String(); !strings.Contains(got, "9503 is also the server_id of sources[0] (a)") || strings.Count(got, "\n") != 1 {
			t.Fatalf("stderr %q", got)
		}
	})
}

// TestPurgedBinlog: with archive.on_gap: stop, when the primary purged
// binlogs the archive still needs, understudy says so loudly and archives
// nothing after the gap (the default, a new generation, is tested in
// package archiver and in TestGapGeneration).
func TestPurgedBinlog(t *testing.T) {
	p := startPrimary(t, 1, 0)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9600})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	stop := startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 20*time.Second)
	stop()
	archivedBefore := archivedGTIDs(t, filepath.Join(dir, "archive", "db"))
	p.Exec(t, "INSERT INTO app.t VALUES (1)")
	p.PurgeBinlogs(t)
	p.Exec(t, "INSERT INTO app.t VALUES (2)")
	src := testSrc(p, replUser, replPassword, 9600)
	st := runUntilError(t, src, filepath.Join(dir, "archive", "db"), "needed binlog purged on the primary", func(a *archiver.Archiver) { a.GapMode = archiver.GapStop })
	if st.State != understudy.StateError {
		t.Fatalf("state %s, want error", st.State)
	}
	if got := archivedGTIDs(t, filepath.Join(dir, "archive", "db")); len(got) != len(archivedBefore) {
		t.Fatalf("archive grew from %d to %d transactions across a purged gap", len(archivedBefore), len(got))
	}
}
