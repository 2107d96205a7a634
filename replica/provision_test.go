package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlogserver"
	"github.com/understudy-db/understudy/internal/labtest"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

func testLogger(t *testing.T) *slog.Logger { return mariadbtest.Logger(t, slog.LevelInfo) }

// lab is one source: its primary, its archive kept by a running archiver,
// and a running binlog server over that archive, as `understudy run`
// keeps them.
type lab struct {
	name    string
	primary *mariadbtest.Server
	dir     string
	serve   Master
	// serverID is the binlog server's.
	serverID    uint32
	stopArchive func()
}

const servePassword = "serve-secret"

// startLab starts a primary (with database db holding a table) for
// source name, archives it and serves the archive.
func startLab(t *testing.T, name string, serverID, domain uint32, db string) *lab {
	t.Helper()
	return startLabWith(t, name, serverID, domain, db, false)
}

// startLabWith is startLab with semi-sync on the primary, acknowledged by
// the archiver once a transaction is durable, when semiSync is set.
func startLabWith(t *testing.T, name string, serverID, domain uint32, db string, semiSync bool) *lab {
	t.Helper()
	p := labtest.StartPrimary(t, mariadbtest.Options{ServerID: serverID, DomainID: domain, SemiSync: semiSync})
	p.Exec(t, "CREATE DATABASE "+db)
	p.Exec(t, "CREATE TABLE "+db+".t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40), n INT)")
	p.Exec(t, "INSERT INTO "+db+".t (v, n) SELECT CONCAT('row', seq), seq FROM "+db+".seq_1_to_2000")
	p.Exec(t, "CREATE TABLE "+db+".nokey (a INT, b VARCHAR(10))")
	p.Exec(t, "INSERT INTO "+db+".nokey SELECT seq % 10, 'dup' FROM "+db+".seq_1_to_50")
	l := &lab{name: name, primary: p, dir: t.TempDir()}

	src := labtest.Source(p, name, 9000+serverID)
	src.SemiSync = semiSync
	l.stopArchive = l.archive(t, src)
	ctx, cancel := context.WithCancel(context.Background())

	srv, err := binlogserver.New(binlogserver.Config{Source: name, Dir: l.dir, User: "understudy", Password: servePassword, ServerID: 9000 + serverID, Logger: testLogger(t).With("part", "serve")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-served
		l.stopArchive()
	})
	l.serverID = 9000 + serverID
	l.serve = Master{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, User: "understudy", Password: servePassword, What: "the binlog server"}
	l.waitArchived(t)
	labtest.TakeSnapshot(t, p, name, l.snapshots(), 0)
	l.waitArchived(t)
	return l
}

// archive runs an archiver of src into the lab's archive until the
// returned function is called (at the latest when the test ends).
func (l *lab) archive(t *testing.T, src understudy.Source) (stop func()) {
	return labtest.Archive(t, src, l.dir, nil, testLogger(t).With("part", "archiver"))
}

func (l *lab) snapshots() string { return filepath.Join(l.dir, "snapshots") }

func (l *lab) source() Source {
	return Source{Name: l.name, ArchiveDir: l.dir, SnapshotRoot: l.snapshots(), Master: l.serve, ServerIDs: []uint32{l.serverID}}
}

// waitArchived waits until the archive holds the primary's position.
func (l *lab) waitArchived(t *testing.T) {
	t.Helper()
	want, err := understudy.ParsePosition(l.primary.GTIDBinlogPos(t))
	if err != nil {
		t.Fatal(err)
	}
	mariadbtest.Eventually(t, "archive of "+l.name+" at "+want.String(), 30*time.Second, func() bool {
		a, err := archive.Open(l.dir)
		return err == nil && a.Position().ContainsPosition(want)
	})
}

// writeLoad commits on the primary until stop is called, and returns how
// many transactions it committed.
func (l *lab) writeLoad(t *testing.T, db string) (stop func() int) {
	var n atomic.Int64
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			var err error
			switch i % 3 {
			case 0:
				_, err = l.primary.DB(t).Exec("INSERT INTO "+db+".t (v, n) VALUES (?, ?)", fmt.Sprintf("load%d", i), i)
			case 1:
				_, err = l.primary.DB(t).Exec("UPDATE "+db+".t SET n = n + 1 WHERE id = ?", 1+i%2000)
			default:
				_, err = l.primary.DB(t).Exec("DELETE FROM "+db+".t WHERE id = ?", 2+i%1999)
			}
			if err != nil {
				t.Errorf("load on %s: %v", l.name, err)
				return
			}
			n.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var once sync.Once
	stop = func() int {
		once.Do(func() { close(quit); wg.Wait() })
		return int(n.Load())
	}
	// A test that ends early stops the load before its servers go.
	t.Cleanup(func() { stop() })
	return stop
}

func startTarget(t *testing.T) *mariadbtest.Server {
	return mariadbtest.Start(t, mariadbtest.Options{Stock: true, ServerID: 500, DomainID: 50,
		Args: []string{"--log-slave-updates", "--gtid-strict-mode=1", "--read-only=1"}})
}

func provisionOpts(t *testing.T, target *mariadbtest.Server, state string, labs ...*lab) ProvisionOptions {
	o := ProvisionOptions{Target: target.DB(t), TargetAddr: fmt.Sprintf("127.0.0.1:%d", target.Port), Via: ViaArchive, StateDir: state, Threads: 2, Log: testLogger(t)}
	for _, l := range labs {
		o.Sources = append(o.Sources, l.source())
	}
	return o
}

// TestProvisionMultiSource provisions one replica of two primaries under
// write load, through their archives' binlog servers, with a run that is
// interrupted in the middle of the second load and run again. The replica
// follows both primaries live, and at a common point its checksums equal
// theirs.
func TestProvisionMultiSource(t *testing.T) {
	one := startLab(t, "one", 1, 1, "alpha")
	two := startLab(t, "two", 2, 2, "beta")
	target := startTarget(t)
	state := t.TempDir()
	stop1, stop2 := one.writeLoad(t, "alpha"), two.writeLoad(t, "beta")

	// The first run dies while loading the second source.
	ctx, cancel := context.WithCancel(context.Background())
	o := provisionOpts(t, target, state, one, two)
	o.Progress = func(stage, source string, done, total int64) {
		if stage == "load" && source == "two" {
			cancel()
		}
	}
	if _, err := Provision(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted provisioning: %v, want context.Canceled", err)
	}
	if conns, _ := AllStatus(context.Background(), target.DB(t)); len(conns) != 0 {
		t.Fatalf("an interrupted run before the connections left %d connections", len(conns))
	}

	// The rerun recognises its work and finishes it.
	res, err := Provision(context.Background(), provisionOpts(t, target, state, one, two))
	if err != nil {
		t.Fatalf("provisioning again: %v", err)
	}
	if !res.Resumed || len(res.Sources) != 2 || len(res.Connections) != 2 {
		t.Fatalf("result %+v: want a resumed run with two sources and two connections", res)
	}
	if res.Sources[0].Verified != -1 || res.Sources[1].Verified <= 0 {
		t.Fatalf("verified chunks %d and %d: want the first source verified by the first run (-1) and the second now", res.Sources[0].Verified, res.Sources[1].Verified)
	}
	for _, c := range res.Connections {
		if !c.Running() || c["Using_Gtid"] != "Slave_Pos" {
			t.Fatalf("connection %s: %v", c.Name(), c)
		}
	}
	t.Log("\n" + Summary(res.Connections))
	if len(res.Warnings) != 0 {
		t.Fatalf("warnings for a target with every setting right: %v", res.Warnings)
	}

	// It follows both primaries live.
	time.Sleep(500 * time.Millisecond)
	if n1, n2 := stop1(), stop2(); n1 == 0 || n2 == 0 {
		t.Fatalf("the load committed %d and %d transactions", n1, n2)
	}
	for _, l := range []*lab{one, two} {
		want, _ := understudy.ParsePosition(l.primary.GTIDBinlogPos(t))
		mariadbtest.Eventually(t, "the replica at "+l.name+"'s "+want.String(), 60*time.Second, func() bool {
			p, err := GTIDSlavePos(context.Background(), target.DB(t))
			return err == nil && p.ContainsPosition(want)
		})
	}
	sameData(t, one.primary, target, "alpha")
	sameData(t, two.primary, target, "beta")
	// The target's own domain is untouched and the state file stays for a
	// rerun, which has nothing left to do.
	res, err = Provision(context.Background(), provisionOpts(t, target, state, one, two))
	if err != nil || !res.Resumed || res.Sources[0].Verified != -1 || res.Sources[1].Verified != -1 {
		t.Fatalf("a third run: %+v, %v: want nothing redone", res, err)
	}
}

func sameData(t *testing.T, p, r *mariadbtest.Server, db string) {
	t.Helper()
	want, got := p.Checksums(t, db), r.Checksums(t, db)
	if len(want) == 0 {
		t.Fatalf("%s: no table to compare", db)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: checksum %s on the replica, %s on the primary", k, got[k], v)
		}
	}
}

// TestProvisionRefusals: a target whose tables the snapshot would
// overwrite, a connection already named like the source, a server_id the
// source uses, and a binlog server that does not answer are each refused
// in one line, and leave the target as it was and no state file.
func TestProvisionRefusals(t *testing.T) {
	one := startLab(t, "one", 1, 1, "alpha")
	target := startTarget(t)
	ctx := context.Background()
	pos := target.QueryString(t, "SELECT @@global.gtid_slave_pos")

	cases := []struct {
		name  string
		setup func(o *ProvisionOptions)
		undo  func()
		want  string
	}{
		{"connection", func(*ProvisionOptions) {
			target.Exec(t, "CHANGE MASTER 'one' TO MASTER_HOST='192.0.2.1', MASTER_PORT=3306, MASTER_USER='x'")
		}, func() { target.Exec(t, "RESET SLAVE 'one' ALL") }, "already has a replication connection named 'one'"},
		{"server_id", func(*ProvisionOptions) { target.Exec(t, "SET GLOBAL server_id = 1") },
			func() { target.Exec(t, "SET GLOBAL server_id = 500") }, "server_id 1"},
		{"master", func(o *ProvisionOptions) { o.Sources[0].Master.Port = 1 }, func() {}, "does not answer"},
		{"password", func(o *ProvisionOptions) { o.Sources[0].Master.Password = "wrong" }, func() {}, "does not answer"},
		// Last: the table stays.
		{"tables", func(*ProvisionOptions) {
			target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE DATABASE alpha")
			target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE TABLE alpha.mine (id INT PRIMARY KEY)")
			target.Exec(t, "SET STATEMENT sql_log_bin=0 FOR INSERT INTO alpha.mine VALUES (7)")
		}, func() {}, "already has databases alpha"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			state := t.TempDir()
			o := provisionOpts(t, target, state, one)
			c.setup(&o)
			defer c.undo()
			_, err := Provision(ctx, o)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v; want one line about %q", err, c.want)
			}
			t.Log(err)
			if got := target.QueryString(t, "SELECT @@global.gtid_slave_pos"); got != pos {
				t.Fatalf("gtid_slave_pos %q after a refusal, was %q", got, pos)
			}
			if files, _ := os.ReadDir(state); len(files) != 0 {
				t.Fatalf("a refused run left %d state files", len(files))
			}
		})
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM alpha.mine"); got != "1" {
		t.Fatalf("the target's own table has %s rows after the refusals", got)
	}
	if got := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='alpha'"); got != "1" {
		t.Fatalf("the target's database alpha has %s tables after the refusals", got)
	}
}

// TestProvisionViaPrimary provisions a replica that replicates from the
// primary itself, and shows that one whose snapshot the primary's purged
// binlogs no longer follow fails in one line naming the cause, where the
// archive's binlog server would serve it.
func TestProvisionViaPrimary(t *testing.T) {
	ctx := context.Background()
	one := startLab(t, "one", 1, 1, "alpha")
	viaPrimary := func(o ProvisionOptions) ProvisionOptions {
		o.Via = ViaPrimary
		o.Sources[0].Master = Master{Host: "127.0.0.1", Port: one.primary.Port, User: "repl", Password: "repl-pw", What: "the primary"}
		return o
	}
	target := startTarget(t)
	one.primary.Exec(t, "INSERT INTO alpha.t (v, n) VALUES ('after the snapshot', 1)")
	res, err := Provision(ctx, viaPrimary(provisionOpts(t, target, t.TempDir(), one)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Connections[0]["Master_Port"] != fmt.Sprint(one.primary.Port) {
		t.Fatalf("connection %v: want the primary's port %d", res.Connections[0], one.primary.Port)
	}
	sameData(t, one.primary, target, "alpha")

	// The primary purges the binlogs after the snapshot.
	one.waitArchived(t)
	one.primary.PurgeBinlogs(t)
	late := startTarget(t)
	_, err = Provision(ctx, viaPrimary(provisionOpts(t, late, t.TempDir(), one)))
	if err == nil || !strings.Contains(err.Error(), "source one: replication on") || !strings.Contains(err.Error(), "1236") || !strings.Contains(err.Error(), "--via archive") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("provisioning from a primary that purged the binlogs after the snapshot: %v", err)
	}
	t.Log(err)
	// Through the archive, the same works.
	if _, err := Provision(ctx, provisionOpts(t, startTarget(t), t.TempDir(), one)); err != nil {
		t.Fatalf("through the archive: %v", err)
	}
}
