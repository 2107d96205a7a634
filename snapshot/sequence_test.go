package snapshot

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestSequenceUnderLoad takes a snapshot while a writer inserts rows
// numbered by a sequence: the sequence's saved state is its state at the
// snapshot's position (read while commits are blocked), so it is just past
// the last row the snapshot holds, and the restored sequence never hands
// out a number the primary handed out before that position.
func TestSequenceUnderLoad(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE SEQUENCE d.s NOCACHE")
	p.Exec(t, "CREATE TABLE d.log (v BIGINT PRIMARY KEY)")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := p.DB(t).Exec("INSERT INTO d.log VALUES (NEXTVAL(d.s))"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for p.QueryString(t, "SELECT COUNT(*) > 200 FROM d.log") != "1" {
	}
	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: t.TempDir(), Threads: 2})
	for p.QueryString(t, "SELECT COUNT(*) > 200 + "+strconv.FormatInt(m.Rows(), 10)+" FROM d.log") != "1" {
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	if err := Load(ctx, target.DB(t), dir, m, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	maxV, _ := strconv.ParseInt(target.QueryString(t, "SELECT MAX(v) FROM d.log"), 10, 64)
	state, _ := strconv.ParseInt(target.QueryString(t, "SELECT next_not_cached_value FROM d.s"), 10, 64)
	primary, _ := strconv.ParseInt(p.QueryString(t, "SELECT next_not_cached_value FROM d.s"), 10, 64)
	t.Logf("snapshot: %d rows up to %d, sequence state %d; the primary's state now %d", m.Rows()-1, maxV, state, primary)
	if state <= maxV {
		t.Fatalf("restored sequence state %d: the snapshot holds the value %d already", state, maxV)
	}
	// At the position, the writer has at most one number taken and not
	// yet committed in a row.
	if state > maxV+2 {
		t.Fatalf("restored sequence state %d is past the snapshot's position (its last row is %d): it was read later", state, maxV)
	}
	if next, _ := strconv.ParseInt(target.QueryString(t, "SELECT NEXTVAL(d.s)"), 10, 64); next <= maxV {
		t.Fatalf("NEXTVAL on the target %d, the snapshot holds %d", next, maxV)
	}
}
