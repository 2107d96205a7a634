package replica

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestPromoteAfterPrimaryCrash: a semi-sync primary under load is killed
// with SIGKILL while its provisioned backup replica lags behind the
// archive. promote --dry-run changes nothing; promote feeds the replica
// the archive's tail, so that every transaction whose commit returned to
// a client is on it, and the promoted replica accepts writes in the
// source's domain.
func TestPromoteAfterPrimaryCrash(t *testing.T) {
	ctx := context.Background()
	one := startLabWith(t, "one", 1, 1, "alpha", true)
	target := startTarget(t)
	// An event the primary runs: provisioned DISABLE ON SLAVE, named by
	// promote.
	one.primary.Exec(t, "CREATE EVENT alpha.nightly ON SCHEDULE EVERY 1 DAY DO DELETE FROM alpha.t WHERE id < 0")
	if _, err := Provision(ctx, provisionOpts(t, target, t.TempDir(), one)); err != nil {
		t.Fatal(err)
	}
	if got := target.QueryString(t, "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_NAME = 'nightly'"); got != "SLAVESIDE_DISABLED" {
		t.Fatalf("the provisioned replica has the primary's event %s", got)
	}
	// The replica lags: its SQL thread is stopped while the load runs.
	target.Exec(t, "STOP SLAVE 'one' SQL_THREAD")
	// An event it gets by replication, maybe only from the fed tail.
	one.primary.Exec(t, "CREATE EVENT alpha.late ON SCHEDULE EVERY 1 DAY DO DELETE FROM alpha.t WHERE id < 0")
	var mu sync.Mutex
	var acked []int
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := 100000 + w*100000 + i
				if _, err := one.primary.DB(t).Exec("INSERT INTO alpha.t (id, v, n) VALUES (?, 'acked', 0)", id); err != nil {
					return // the primary is gone
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	one.primary.Kill(t)
	wg.Wait()
	if len(acked) < 20 {
		t.Fatalf("only %d commits returned before the crash", len(acked))
	}
	target.Exec(t, "START SLAVE 'one' SQL_THREAD")

	o := PromoteOptions{Target: target.DB(t), TargetAddr: fmt.Sprintf("127.0.0.1:%d", target.Port), Source: "one", ArchiveDir: one.dir, DryRun: true, Log: testLogger(t)}
	// A filtered connection is refused, by name.
	target.Exec(t, "STOP SLAVE 'one'")
	target.Exec(t, "SET GLOBAL one.replicate_ignore_db = 'alpha'")
	if _, err := Promote(ctx, o); err == nil || !strings.Contains(err.Error(), "Replicate_Ignore_DB: alpha") {
		t.Fatalf("promote of a filtered replica: %v", err)
	}
	target.Exec(t, "SET GLOBAL one.replicate_ignore_db = ''")
	target.Exec(t, "START SLAVE 'one'")
	res, err := Promote(ctx, o)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	t.Logf("dry run: %+v", res)
	if w := strings.Join(res.Warnings, "\n"); !strings.Contains(w, "DISABLE ON SLAVE, as a replica does: ") || !strings.Contains(w, "alpha.nightly") {
		t.Fatalf("promote does not name the disabled event: %s", w)
	}
	if _, ok, _ := ConnStatus(ctx, target.DB(t), "one"); !ok || target.QueryString(t, "SELECT @@read_only") != "1" || len(res.Steps) != 4 {
		t.Fatalf("the dry run changed the target or said nothing: %+v", res)
	}

	o.DryRun = false
	res, err = Promote(ctx, o)
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	t.Logf("promoted: %+v", res)
	if got := strings.Join(res.DisabledEvents, ","); got != "alpha.late,alpha.nightly" || !strings.Contains(strings.Join(res.Warnings, "\n"), "alpha.late, alpha.nightly") {
		t.Fatalf("events disabled after the promotion: %s; warnings %v", got, res.Warnings)
	}
	have := map[int]bool{}
	rows, err := target.DB(t).Query("SELECT id FROM alpha.t WHERE v = 'acked'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int
		rows.Scan(&id)
		have[id] = true
	}
	rows.Close()
	for _, id := range acked {
		if !have[id] {
			t.Fatalf("transaction inserting id %d was acknowledged to its client and is not on the promoted replica (%d of %d acknowledged are)", id, len(have), len(acked))
		}
	}
	if _, ok, _ := ConnStatus(ctx, target.DB(t), "one"); ok {
		t.Fatal("the connection of the lost primary is still there")
	}
	// A new session, as an application's after the failover (the pool's
	// sessions may have had sql_log_bin=0 set by the load).
	app, err := sql.Open("mysql", target.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if _, err := app.Exec("INSERT INTO alpha.t (v, n) VALUES ('after promotion', 1)"); err != nil {
		t.Fatalf("a write on the promoted replica: %v", err)
	}
	pos, _ := understudy.ParsePosition(target.GTIDBinlogPos(t))
	g, ok := pos.Domain(1)
	if !ok || g.ServerID != 500 || !strings.Contains(res.Position, "1-") {
		t.Fatalf("after a write on the promoted replica gtid_binlog_pos is %s: want the write in domain 1 by server 500", pos)
	}
	if d := target.QueryString(t, "SELECT @@global.gtid_domain_id"); d != strconv.Itoa(1) {
		t.Fatalf("gtid_domain_id %s", d)
	}

	// The archive continues on the new primary, in the same domain and
	// generation (docs/replicas.md).
	one.stopArchive()
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER repl@'%' IDENTIFIED BY 'repl-pw'")
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO repl@'%'")
	gens := len(archiveGenerations(t, one.dir))
	one.archive(t, understudy.Source{Name: "one", Host: "127.0.0.1", Port: target.Port, User: "repl", Password: "repl-pw", ServerID: 9001, Heartbeat: 300 * time.Millisecond})
	if _, err := app.Exec("INSERT INTO alpha.t (v, n) VALUES ('archived from the new primary', 2)"); err != nil {
		t.Fatal(err)
	}
	want, _ := understudy.ParsePosition(target.GTIDBinlogPos(t))
	want = want.Only([]uint32{1})
	mariadbtest.Eventually(t, "the archive at the new primary's "+want.String(), 30*time.Second, func() bool {
		a, err := archive.Open(one.dir)
		return err == nil && a.Position().ContainsPosition(want)
	})
	if n := len(archiveGenerations(t, one.dir)); n != gens {
		t.Fatalf("the archive went from %d to %d generations on the new primary", gens, n)
	}
}

func archiveGenerations(t *testing.T, dir string) []archive.Generation {
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a.Generations()
}

// TestFailureRedacted: when a replica's SQL thread stops on an account
// statement, the error understudy reports quotes it without its password.
func TestFailureRedacted(t *testing.T) {
	ctx := context.Background()
	one := startLab(t, "one", 1, 1, "alpha")
	target := startTarget(t)
	if _, err := Provision(ctx, provisionOpts(t, target, t.TempDir(), one)); err != nil {
		t.Fatal(err)
	}
	target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER app@'%'")
	one.primary.Exec(t, "CREATE USER app@'%' IDENTIFIED BY 's3cret-pw'")
	var failure string
	mariadbtest.Eventually(t, "the replica to stop on the CREATE USER", 30*time.Second, func() bool {
		st, _, err := ConnStatus(ctx, target.DB(t), "one")
		failure = st.Failure()
		return err == nil && failure != ""
	})
	t.Log(failure)
	if strings.Contains(failure, "s3cret-pw") || !strings.Contains(failure, "CREATE USER") || !strings.Contains(failure, "<secret>") {
		t.Fatalf("failure %q: want the statement with its password redacted", failure)
	}
	// Promote refuses it, and its message is redacted too.
	_, err := Promote(ctx, PromoteOptions{Target: target.DB(t), TargetAddr: "t", Source: "one", ArchiveDir: one.dir, DryRun: true})
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("promote of a replica stopped on an error: %v", err)
	}
}
