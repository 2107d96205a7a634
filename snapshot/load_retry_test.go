package snapshot

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestLoadChunkRetry loads a chunk whose rows another transaction holds
// locked: the load times out on the lock, is rolled back whole, and is
// loaded again once the lock is gone, adding every row once.
func TestLoadChunkRetry(t *testing.T) {
	ctx := context.Background()
	src := mariadbtest.Start(t, mariadbtest.Options{})
	src.Exec(t, "CREATE DATABASE d")
	src.Exec(t, "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10))")
	src.Exec(t, "INSERT INTO d.t SELECT seq, CONCAT('v', seq) FROM d.seq_1_to_1000")
	m, dir, err := Take(ctx, Options{Source: "s", DB: src.DB(t), Root: t.TempDir(), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}

	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	target.Exec(t, "CREATE DATABASE d")
	target.Exec(t, "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10))")
	db := target.DB(t)
	blocker, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	// An uncommitted row inside the chunk: the load waits for its lock.
	for _, q := range []string{"BEGIN", "INSERT INTO d.t VALUES (500, 'locked')", "DELETE FROM d.t WHERE id = 500"} {
		if _, err := blocker.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	loader, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer loader.Close()
	if _, err := loader.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1"); err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(1500 * time.Millisecond)
		blocker.ExecContext(ctx, "ROLLBACK")
	}()
	var logs bytes.Buffer
	tb := &m.Databases[0].Tables[0]
	j := job{db: "d", table: tb, chunk: &tb.Chunks[0]}
	// One decoder for every attempt, as a load's worker has: the retry
	// resets it after the failed attempt stopped partway.
	zr, err := newChunkDecoder()
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	err = loadChunkRetrying(ctx, loader, zr, dir, m, j, slog.New(slog.NewTextHandler(&logs, nil)))
	<-released
	if err != nil {
		t.Fatalf("load with a retry: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "loading a chunk again") || !strings.Contains(logs.String(), "Lock wait timeout") {
		t.Fatalf("the chunk was not loaded again after a lock wait timeout: %s", logs.String())
	}
	if got := target.QueryString(t, "SELECT CONCAT(COUNT(*), ' ', SUM(id)) FROM d.t"); got != "1000 500500" {
		t.Fatalf("after the retry: %s, want 1000 rows once each", got)
	}
}
