package replication

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestDeadStream: time spent in the handler (an fsync, a sealed file) is
// not silence, however long; a network that drops packets without a reset
// is. Stream returns ErrTimeout about DeadAfter(heartbeat) after the last
// byte, without waiting on the KILL that Stream sends on close.
func TestDeadStream(t *testing.T) {
	const hb = 200 * time.Millisecond
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, DomainID: 2})
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER repl@'%' IDENTIFIED BY 'pw'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	db := p.DB(t)
	link := p.Proxy(t)
	src := understudy.Source{Name: "db", Host: link.Host, Port: link.Port, User: "repl", Password: "pw", ServerID: 9200, Heartbeat: hb}

	var gtids int
	var blackholed time.Time
	h := HandlerFunc(func(ev []byte) error {
		if ev[4] != binlog.GTIDEvent {
			return nil
		}
		gtids++
		switch gtids {
		case 2:
			// The next transaction arrives while the handler is busy (a
			// slow disk), and is read from the socket after it.
			if _, err := db.Exec("INSERT INTO app.t VALUES (1)"); err != nil {
				return err
			}
			time.Sleep(3 * DeadAfter(hb))
		case 3:
			link.Blackhole()
			blackholed = time.Now()
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Stream(ctx, src, understudy.Position{}, nil, h)
	took := time.Since(blackholed)
	if gtids != 3 {
		t.Fatalf("%d transactions streamed, want all 3 (err %v)", gtids, err)
	}
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Stream returned %v, want a timeout", err)
	}
	// The watchdog checks 8 times per DeadAfter; a second of slack for a
	// busy machine.
	if limit := DeadAfter(hb) + time.Second; took > limit {
		t.Fatalf("Stream returned %s after the network went dead, want within %s", took, limit)
	}
	t.Logf("dead stream: %v, %s after the network went dead", err, took.Round(time.Millisecond))
}
