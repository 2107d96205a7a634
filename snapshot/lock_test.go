package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestTakeConcurrent takes snapshots of one source while one is being
// taken: one that waits too short refuses, naming the one in progress, and
// touches nothing of it; one that waits long enough is taken after it.
// A crashed snapshot's leftovers are removed by the next one, and every
// snapshot gets an ID of its own.
func TestTakeConcurrent(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	p.Exec(t, "CREATE DATABASE d")
	p.Exec(t, "CREATE TABLE d.t (id INT PRIMARY KEY, v VARCHAR(10))")
	p.Exec(t, "INSERT INTO d.t SELECT seq, CONCAT('v', seq) FROM d.seq_1_to_100")
	root := t.TempDir()
	// A crashed snapshot's directory: no lock holds it.
	crashed := filepath.Join(root, "20200101T000000Z.partial")
	if err := os.MkdirAll(filepath.Join(crashed, "d"), 0o755); err != nil {
		t.Fatal(err)
	}

	// The first snapshot stops in its first chunk until the second has
	// been refused.
	inFirst, second := make(chan string), make(chan struct{})
	type result struct {
		m   *Manifest
		dir string
		err error
	}
	firstDone := make(chan result, 1)
	go func() {
		once := false
		m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: root, Threads: 1, Progress: func(Progress) {
			if !once {
				once = true
				ents, _ := filepath.Glob(filepath.Join(root, "*.partial"))
				inFirst <- strings.Join(ents, " ")
				<-second
			}
		}})
		firstDone <- result{m, dir, err}
	}()
	var partial string
	select {
	case partial = <-inFirst:
	case r := <-firstDone:
		t.Fatalf("the first snapshot ended before its first chunk was reported: %v", r.err)
	}
	if strings.Contains(partial, crashed) || strings.Count(partial, ".partial") != 1 {
		t.Fatalf("while the first snapshot runs, the partial directories are %q: want its own only (the crashed one removed)", partial)
	}
	// One that waits longer than the first takes, started now.
	thirdDone := make(chan result, 1)
	go func() {
		m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: root, Threads: 1, LockWait: time.Minute})
		thirdDone <- result{m, dir, err}
	}()
	began := time.Now()
	_, _, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: root, Threads: 1, LockWait: 300 * time.Millisecond})
	if waited := time.Since(began); waited < 300*time.Millisecond {
		t.Errorf("the second snapshot gave up after %v, before its LockWait", waited)
	}
	if !errors.Is(err, ErrInProgress) {
		t.Fatalf("second snapshot at the same time: %v, want ErrInProgress", err)
	}
	t.Logf("refused: %v", err)
	firstID := strings.TrimSuffix(filepath.Base(partial), ".partial")
	if msg := err.Error(); !strings.Contains(msg, "snapshot "+firstID) || !strings.Contains(msg, "source s") || strings.Contains(msg, "\n") {
		t.Fatalf("the refusal does not name the snapshot in progress in one line: %q", msg)
	}
	if _, err := os.Stat(partial); err != nil {
		t.Fatalf("the refused snapshot touched the running one's directory: %v", err)
	}
	close(second)
	r := <-firstDone
	if r.err != nil {
		t.Fatalf("the first snapshot failed after the second was refused: %v", r.err)
	}
	if r.m.ID != firstID {
		t.Fatalf("the first snapshot's ID is %s, its directory was %s", r.m.ID, partial)
	}
	if problems := VerifyFiles(r.dir, r.m); len(problems) > 0 {
		t.Fatalf("the first snapshot is damaged: %v", problems)
	}
	third := <-thirdDone
	if third.err != nil {
		t.Fatalf("the snapshot that waited for the first failed: %v", third.err)
	}
	if third.m.Started.Before(r.m.Finished) || third.m.ID == r.m.ID {
		t.Fatalf("the snapshot that waited started at %v (ID %s), the first finished at %v (ID %s)", third.m.Started, third.m.ID, r.m.Finished, r.m.ID)
	}

	// Once the first is done, the next ones are taken, each with its own ID
	// (the same second gets a suffix).
	ids := map[string]bool{r.m.ID: true, third.m.ID: true}
	for i := 0; i < 2; i++ {
		m, _, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: root, Threads: 1})
		if err != nil {
			t.Fatalf("snapshot after the first: %v", err)
		}
		if ids[m.ID] {
			t.Fatalf("ID %s given twice", m.ID)
		}
		ids[m.ID] = true
	}
	list, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 {
		t.Fatalf("%d snapshots listed, want 4", len(list))
	}
	left, _ := filepath.Glob(filepath.Join(root, "*.partial"))
	if len(left) > 0 {
		t.Fatalf("partial directories left: %v", left)
	}
}
