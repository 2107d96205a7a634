package snapshot

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestCommitBlockCountsTheWait: BACKUP STAGE BLOCK_COMMIT first waits for
// the commits in progress, and while it waits new commits queue behind it.
// The commit block a snapshot reports includes that wait. A commit is held
// in progress by semi-sync, waiting for an acknowledgement that no replica
// sends, until hold after BLOCK_COMMIT is seen waiting for it.
func TestCommitBlockCountsTheWait(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	db := p.DB(t)
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE TABLE d.t (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO d.t VALUES (1)")
	// From now on a commit waits up to a minute for an acknowledgement.
	p.Exec(t, "SET GLOBAL rpl_semi_sync_master_timeout = 60000")
	p.Exec(t, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
	held := make(chan error, 1)
	go func() {
		_, err := db.ExecContext(ctx, "INSERT INTO d.t VALUES (2)")
		held <- err
	}()
	waitProcess(t, db, "INSERT INTO d.t VALUES (2)", "Waiting for semi-sync ACK%")

	type result struct {
		m   *Manifest
		err error
	}
	taken := make(chan result, 1)
	go func() {
		m, _, err := Take(ctx, Options{Source: "s", DB: db, Root: t.TempDir(), Threads: 2})
		taken <- result{m, err}
	}()
	waitProcess(t, db, "BACKUP STAGE BLOCK_COMMIT", "Waiting for backup lock")
	// A commit that comes while BLOCK_COMMIT waits is blocked already.
	queued := make(chan error, 1)
	go func() {
		tx, err := db.BeginTx(ctx, nil)
		if err == nil {
			if _, err = tx.ExecContext(ctx, "INSERT INTO d.t VALUES (3)"); err == nil {
				err = tx.Commit()
			}
		}
		queued <- err
	}()
	waitProcess(t, db, "COMMIT", "Waiting for backup lock")
	const hold = 700 * time.Millisecond
	time.Sleep(hold)
	// Semi-sync off: the held commit returns, BLOCK_COMMIT gets its lock.
	p.Exec(t, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
	r := <-taken
	if r.err != nil {
		t.Fatalf("snapshot: %v", r.err)
	}
	if err := <-held; err != nil {
		t.Fatalf("the held commit: %v", err)
	}
	if err := <-queued; err != nil {
		t.Fatalf("the queued commit: %v", err)
	}
	t.Logf("commit block %.1f ms, commits held %v before it ended", r.m.CommitBlockMillis, hold)
	if got, least := r.m.CommitBlockMillis, float64(hold.Milliseconds()); got < least {
		t.Fatalf("commit_block_ms=%.1f, want at least %.0f: commits waited that long behind BACKUP STAGE BLOCK_COMMIT", got, least)
	}
	// The commit BLOCK_COMMIT waited for is in the snapshot; the one that
	// queued behind it is not.
	if got, want := r.m.Rows(), int64(2); got != want {
		t.Fatalf("snapshot has %d rows, want %d (rows 1 and 2)", got, want)
	}
}

// waitProcess waits until a connection runs the statement info (exactly,
// case-insensitively) in a state LIKE state.
func waitProcess(t *testing.T, db *sql.DB, info, state string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = ? AND STATE LIKE ?", info, state).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection runs %q in state %q after 30s", info, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
