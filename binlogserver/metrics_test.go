package binlogserver

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestReplicasMetric: understudy_binlog_server_replicas counts the
// replicas streaming (a connection that only logs in is not one), and
// falls back to 0 when the replica stops.
func TestReplicasMetric(t *testing.T) {
	p := startPrimary(t, mariadbtest.Options{ServerID: 1})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO app.t VALUES (1), (2)")
	dir := t.TempDir()
	archiveCaughtUp(t, p, dir)
	m := NewMetrics(prometheus.NewRegistry())
	addr := serve(t, dir, m).Addr().String()
	replicas, conns := m.Replicas.WithLabelValues("db"), m.Conns.WithLabelValues("db")
	if got := testutil.ToFloat64(replicas); got != 0 {
		t.Fatalf("understudy_binlog_server_replicas %v before any replica, want 0", got)
	}

	c := connect(t, addr)
	selectString(t, c, "1")
	if got, want := testutil.ToFloat64(conns), 1.0; got != want {
		t.Fatalf("understudy_binlog_server_connections %v with a client logged in, want %v", got, want)
	}
	if got := testutil.ToFloat64(replicas); got != 0 {
		t.Fatalf("understudy_binlog_server_replicas %v with a client that does not stream, want 0", got)
	}
	c.Close()

	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplica(t, r, addr)
	waitPos(t, r, p.GTIDBinlogPos(t), 20*time.Second)
	if got, want := testutil.ToFloat64(replicas), 1.0; got != want {
		t.Fatalf("understudy_binlog_server_replicas %v with a replica streaming, want %v", got, want)
	}
	r.Exec(t, "STOP SLAVE 'u'")
	waitValue(t, "understudy_binlog_server_replicas after STOP SLAVE", func() float64 { return testutil.ToFloat64(replicas) }, 0)
	waitValue(t, "understudy_binlog_server_connections after STOP SLAVE", func() float64 { return testutil.ToFloat64(conns) }, 0)
}

// waitValue waits up to 10 s for get to return want.
func waitValue(t *testing.T, what string, get func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := get()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
