package archiver

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

const replUser, replPassword = "repl", "repl-pw"

// startPrimary starts a primary with a replication account and app.t;
// args are extra mariadbd arguments.
func startPrimary(t *testing.T, args ...string) *mariadbtest.Server {
	t.Helper()
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, DomainID: 4, Args: args})
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER "+replUser+"@'%' IDENTIFIED BY '"+replPassword+"'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO "+replUser+"@'%'")
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
	return p
}

func write(t *testing.T, p *mariadbtest.Server, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		p.Exec(t, "INSERT INTO app.t (v) VALUES ('x')")
	}
}

// archived lists the archive's GTIDs per generation.
func archived(t *testing.T, dir string) map[int][]understudy.GTID {
	t.Helper()
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CheckContinuity(); err != nil {
		t.Fatal(err)
	}
	out := map[int][]understudy.GTID{}
	for _, fi := range a.Files() {
		recs, err := a.Records(fi)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out[fi.Generation] = append(out[fi.Generation], r.GTID)
		}
	}
	return out
}

// running is an Archiver running in the background.
type running struct {
	a      *Archiver
	cancel func()
	done   chan error
	gens   chan archive.Generation
	logs   *mariadbtest.LogBuffer
}

func start(t *testing.T, p *mariadbtest.Server, dir string, m *Metrics, setup func(*Archiver)) *running {
	t.Helper()
	src := understudy.Source{Name: "db", Host: "127.0.0.1", Port: p.Port, User: replUser, Password: replPassword, ServerID: 9100, Heartbeat: 300 * time.Millisecond}
	logs := &mariadbtest.LogBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, mariadbtest.TestLog{TB: t}), nil))
	a := New(src, dir, log, m)
	a.MaxBackoff = 300 * time.Millisecond
	r := &running{a: a, done: make(chan error, 1), gens: make(chan archive.Generation, 10), logs: logs}
	a.OnGeneration = func(g archive.Generation) { r.gens <- g }
	if setup != nil {
		setup(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("archiver: %v", err)
	}
}

func waitCaughtUp(t *testing.T, p *mariadbtest.Server, dir string) {
	t.Helper()
	want, _ := understudy.ParsePosition(p.GTIDBinlogPos(t))
	mariadbtest.Eventually(t, "the archive to reach "+want.String(), 30*time.Second, func() bool {
		a, err := archive.Open(dir)
		return err == nil && a.Position().ContainsPosition(want)
	})
}

func sameGTIDs(t *testing.T, what string, got, want []understudy.GTID) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d GTIDs archived, want %d (%v vs %v)", what, len(got), len(want), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: GTID %d is %s, want %s", what, i, got[i], want[i])
		}
	}
}

// TestAdoptPurgedPrimary: a primary that flushed its binlogs several times
// and purged all but the newest is adopted at the oldest position it still
// holds, with exactly the transactions of its remaining binlogs; a restart
// does not begin the archive again.
func TestAdoptPurgedPrimary(t *testing.T) {
	p := startPrimary(t)
	for i := 0; i < 3; i++ {
		write(t, p, 5)
		p.Exec(t, "FLUSH BINARY LOGS")
	}
	write(t, p, 5)
	before := p.GTIDBinlogPos(t)
	p.PurgeBinlogs(t)
	write(t, p, 7)

	dir := t.TempDir()
	r := start(t, p, dir, nil, nil)
	var g archive.Generation
	select {
	case g = <-r.gens:
	case <-time.After(30 * time.Second):
		t.Fatal("no generation began")
	}
	if g.ID != 1 || g.StartPosition.String() != before || !strings.Contains(g.Reason, "oldest") {
		t.Fatalf("generation %+v, want 1 at %s (the oldest position the primary holds)", g, before)
	}
	waitCaughtUp(t, p, dir)
	sameGTIDs(t, "adopted archive", archived(t, dir)[1], p.BinlogGTIDs(t))
	st := r.a.Status()
	if st.Generation != 1 || st.ArchiveStart != before || !strings.Contains(st.ArchiveStartReason, "oldest binlog") {
		t.Fatalf("status %+v", st)
	}
	if !strings.Contains(r.logs.String(), "archive begins") {
		t.Fatalf("log does not say where the archive begins:\n%s", r.logs.String())
	}
	r.stop(t)

	// A restart resumes; the archive does not begin again.
	write(t, p, 3)
	r = start(t, p, dir, nil, nil)
	waitCaughtUp(t, p, dir)
	select {
	case g := <-r.gens:
		t.Fatalf("a restart began generation %+v", g)
	default:
	}
	sameGTIDs(t, "after a restart", archived(t, dir)[1], p.BinlogGTIDs(t))
}

// TestAdoptCurrent: archive.start: current begins at the primary's
// gtid_binlog_pos and archives only what follows.
func TestAdoptCurrent(t *testing.T) {
	p := startPrimary(t)
	write(t, p, 5)
	pos := p.GTIDBinlogPos(t)
	dir := t.TempDir()
	r := start(t, p, dir, nil, func(a *Archiver) { a.StartMode = StartCurrent })
	g := <-r.gens
	if g.StartPosition.String() != pos || !strings.Contains(g.Reason, "current") {
		t.Fatalf("generation %+v, want one at %s", g, pos)
	}
	write(t, p, 4)
	waitCaughtUp(t, p, dir)
	all := p.BinlogGTIDs(t)
	sameGTIDs(t, "archive.start: current", archived(t, dir)[1], all[len(all)-4:])
}

// TestGapStartsANewGeneration: understudy is down while the primary writes
// and purges; on restart the archive closes generation 1, records the gap
// loudly and begins generation 2 at the primary's oldest position. With
// on_gap: stop the source stops instead and nothing is archived.
func TestGapStartsANewGeneration(t *testing.T) {
	p := startPrimary(t)
	write(t, p, 5)
	dir := t.TempDir()
	r := start(t, p, dir, nil, nil)
	<-r.gens
	waitCaughtUp(t, p, dir)
	r.stop(t)
	end := p.GTIDBinlogPos(t)
	gen1 := archived(t, dir)[1]

	write(t, p, 6) // never archived
	p.PurgeBinlogs(t)
	oldest := p.GTIDBinlogPos(t)
	write(t, p, 4)

	// on_gap: stop keeps the old behaviour.
	r = start(t, p, dir, nil, func(a *Archiver) { a.GapMode = GapStop })
	mariadbtest.Eventually(t, "the purge error", 20*time.Second, func() bool {
		return strings.Contains(r.a.Status().LastError, "needed binlog purged")
	})
	if st := r.a.Status(); st.State != understudy.StateError || len(st.Gaps) != 0 {
		t.Fatalf("on_gap stop: %+v", st)
	}
	r.stop(t)
	sameGTIDs(t, "on_gap: stop", archived(t, dir)[1], gen1)

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r = start(t, p, dir, m, nil)
	var g archive.Generation
	select {
	case g = <-r.gens:
	case <-time.After(30 * time.Second):
		t.Fatal("no new generation")
	}
	if g.ID != 2 || g.StartPosition.String() != oldest || g.Gap == nil || g.Gap.From.String() != end || g.Gap.To.String() != oldest {
		t.Fatalf("generation %+v (gap %+v), want 2 after a gap from %s to %s", g, g.Gap, end, oldest)
	}
	if miss := g.Gap.Missing()[4]; miss != 6 {
		t.Fatalf("gap misses %d transactions in domain 4, want 6", miss)
	}
	waitCaughtUp(t, p, dir)
	got := archived(t, dir)
	sameGTIDs(t, "generation 1 after the gap", got[1], gen1)
	sameGTIDs(t, "generation 2", got[2], p.BinlogGTIDs(t))
	st := r.a.Status()
	if st.Generation != 2 || len(st.Gaps) != 1 || st.State != understudy.StateStreaming {
		t.Fatalf("status after the gap: %+v", st)
	}
	if n := testutil.ToFloat64(m.Gaps.WithLabelValues("db")); n != 1 {
		t.Fatalf("understudy_archive_gaps_total %v, want 1", n)
	}
	if !strings.Contains(r.logs.String(), "level=ERROR msg=\"GAP in the archive") {
		t.Fatalf("no ERROR line for the gap:\n%s", r.logs.String())
	}
}
