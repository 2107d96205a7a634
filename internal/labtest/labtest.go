// Package labtest sets up what several packages' tests need around a real
// primary: a replication account, an archiver that follows the primary
// into an archive directory, and snapshots. It builds on mariadbtest (the
// servers) and on the packages under test elsewhere (archiver, snapshot),
// so that their own tests, which mariadbtest serves, stay free of cycles.
package labtest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/archiver"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

// The replication account StartPrimary creates.
const ReplUser, ReplPassword = "repl", "repl-pw"

// StartPrimary starts a primary with the replication account (REPLICATION
// SLAVE and REPLICATION CLIENT), created without binlogging it.
func StartPrimary(tb testing.TB, o mariadbtest.Options) *mariadbtest.Server {
	tb.Helper()
	p := mariadbtest.Start(tb, o)
	p.Exec(tb, "SET STATEMENT sql_log_bin=0 FOR CREATE USER "+ReplUser+"@'%' IDENTIFIED BY '"+ReplPassword+"'")
	p.Exec(tb, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO "+ReplUser+"@'%'")
	return p
}

// Source is the understudy source of p as source name, with understudy's
// server_id serverID and a short heartbeat.
func Source(p *mariadbtest.Server, name string, serverID uint32) understudy.Source {
	return understudy.Source{Name: name, Host: p.Host, Port: p.Port, User: ReplUser, Password: ReplPassword, ServerID: serverID, Heartbeat: 300 * time.Millisecond}
}

// Archive runs an archiver of src into dir until the returned function is
// called (at the latest when the test ends). With p given, stop first
// waits until the archive holds p's gtid_binlog_pos.
func Archive(tb testing.TB, src understudy.Source, dir string, p *mariadbtest.Server, log *slog.Logger) (stop func()) {
	tb.Helper()
	a := archiver.New(src, dir, log, nil)
	a.MaxBackoff = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		tb.Helper()
		if stopped {
			return
		}
		stopped = true
		if p != nil {
			WaitArchived(tb, dir, p)
		}
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("archiver of %s: %v", src.Name, err)
		}
	}
	tb.Cleanup(stop)
	return stop
}

// WaitArchived waits up to 30 s until the archive in dir holds p's
// gtid_binlog_pos.
func WaitArchived(tb testing.TB, dir string, p *mariadbtest.Server) {
	tb.Helper()
	want, err := understudy.ParsePosition(p.GTIDBinlogPos(tb))
	if err != nil {
		tb.Fatal(err)
	}
	mariadbtest.Eventually(tb, "the archive at "+want.String(), 30*time.Second, func() bool {
		a, err := archive.Open(dir)
		return err == nil && a.Position().ContainsPosition(want)
	})
}

// TakeSnapshot takes a snapshot of p as source name into root, with
// chunks of chunkRows rows (0: the default).
func TakeSnapshot(tb testing.TB, p *mariadbtest.Server, name, root string, chunkRows int64) *snapshot.Manifest {
	tb.Helper()
	m, _, err := snapshot.Take(context.Background(), snapshot.Options{Source: name, DB: p.DB(tb), From: fmt.Sprintf("%s:%d", p.Host, p.Port), Root: root, Threads: 2, ChunkRows: chunkRows})
	if err != nil {
		tb.Fatalf("snapshot of %s: %v", name, err)
	}
	return m
}
