package replication

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestOldestPositionIsNotSemiSync: the probe of the oldest binlog does not
// register as a semi-sync replica, even for a semi-sync source; the stream
// does. A probe that did could hang the primary (see OldestPosition): on a
// loaded machine the archiver's first stream, which follows the probe, then
// got no event, ever (replica's TestPromoteAfterPrimaryCrash stalled so).
// That hang is a race inside MariaDB; what the server logs of each dump
// shows deterministically whether the probe could cause it.
func TestOldestPositionIsNotSemiSync(t *testing.T) {
	p := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1, DomainID: 3, SemiSync: true})
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR CREATE USER repl@'%' IDENTIFIED BY 'pw'")
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
	src := understudy.Source{Name: "db", Host: p.Host, Port: p.Port, User: "repl", Password: "pw", ServerID: 9300, Heartbeat: 200 * time.Millisecond, SemiSync: true}
	const dump, semi = "Start binlog_dump to slave_server(9300)", "Start semi-sync binlog_dump to slave (server_id: 9300)"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	o, err := OldestPosition(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.File == "" || !o.Position.IsZero() {
		t.Fatalf("oldest %+v, want the first binlog and an empty position", o)
	}
	log := p.ErrorLog(t)
	if got, want := strings.Count(log, dump), 1; got != want {
		t.Fatalf("the primary logged %d dumps of server_id 9300, want the probe's %d:\n%s", got, want, dumpLines(log))
	}
	if strings.Contains(log, semi) {
		t.Fatalf("the probe registered as a semi-sync replica:\n%s", dumpLines(log))
	}

	// The stream of a semi-sync source registers, and the primary logs it:
	// the check above is not vacuous.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var events int
	err = Stream(sctx, src, o.Position, nil, HandlerFunc(func(ev []byte) error {
		events++
		stop()
		return nil
	}))
	if err != nil || events == 0 {
		t.Fatalf("stream: %d events, err %v", events, err)
	}
	if log := p.ErrorLog(t); !strings.Contains(log, semi) {
		t.Fatalf("the stream of a semi-sync source did not register as a semi-sync replica:\n%s", dumpLines(log))
	}
}

// dumpLines are the lines of a server's error log about dump threads.
func dumpLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "binlog_dump") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
