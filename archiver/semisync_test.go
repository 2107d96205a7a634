package archiver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestUntilCaughtUpIsNotSemiSync: a one-shot catch-up of a semi-sync
// source does not register as a semi-sync replica (it would leave the
// primary waiting for its acknowledgements), while `run` does.
func TestUntilCaughtUpIsNotSemiSync(t *testing.T) {
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, DomainID: 4, SemiSync: true,
		Args: []string{"--rpl-semi-sync-master-wait-no-slave=OFF"}})
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER repl@'%' IDENTIFIED BY 'pw'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
	p.Exec(t, "CREATE DATABASE app")
	src := understudy.Source{Name: "db", Host: p.Host, Port: p.Port, User: "repl", Password: "pw", ServerID: 9400, Heartbeat: 200 * time.Millisecond, SemiSync: true}
	const semi = "Start semi-sync binlog_dump to slave (server_id: 9400)"
	dir := t.TempDir()

	a := New(src, dir, mariadbtest.Logger(t, 0), nil)
	a.UntilCaughtUp = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if log := p.ErrorLog(t); strings.Contains(log, semi) {
		t.Fatal("run --until-caught-up registered as a semi-sync replica")
	}

	// The daemon does.
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	a = New(src, dir, mariadbtest.Logger(t, 0), nil)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	mariadbtest.Eventually(t, "run to register as a semi-sync replica", 30*time.Second, func() bool {
		return strings.Contains(p.ErrorLog(t), semi)
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
