package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestDrillCommand follows a DBA proving the backups of a source archived
// and served by `understudy run`, with two snapshots and writes between
// them: `understudy drill` onto a stock MariaDB install, compared with a
// provisioned backup replica, passes, leaves the target as empty as it
// found it, and shows in /status, `status`, `info` and the metrics of the
// running run. A flipped byte in a snapshot exits 3 and shows as a failure
// there. Then drill.every makes run drill by itself, on a throwaway
// server, and the passed drill shows in /status and the metrics.
func TestDrillCommand(t *testing.T) {
	t.Setenv("UNDERSTUDY_TARGET_PASSWORD", "")
	t.Setenv("UNDERSTUDY_REPLICA_PASSWORD", "")
	p := startPrimary(t, 1, 1)
	p.Exec(t, "SET STATEMENT sql_log_bin=0 FOR GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	p.Exec(t, "CREATE DATABASE shop")
	p.Exec(t, "CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20))")
	p.Exec(t, "INSERT INTO shop.t SELECT seq, 'first' FROM shop.seq_1_to_300")

	dir := t.TempDir()
	httpAddr := freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: freeAddr(t)})
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), `listen: "off"`, `listen: "`+httpAddr+`"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	adir := filepath.Join(dir, "archive", "db")
	stop := startRun(t, cfg)
	waitArchived(t, adir, p, 30*time.Second)
	m1 := takeSnapshotCmd(t, cfg)
	p.Exec(t, "UPDATE shop.t SET v = 'second' WHERE id % 3 = 0")
	p.Exec(t, "CREATE TABLE shop.u (id INT AUTO_INCREMENT PRIMARY KEY, w INT)")
	p.Exec(t, "INSERT INTO shop.u (w) SELECT seq FROM shop.seq_1_to_100")
	waitArchived(t, adir, p, 30*time.Second)
	m2 := takeSnapshotCmd(t, cfg)
	p.Exec(t, "DELETE FROM shop.t WHERE id > 290")
	waitArchived(t, adir, p, 30*time.Second)

	r := mariadbtest.Start(t, mariadbtest.Options{Stock: true, ServerID: 700, DomainID: 70})
	var so, se strings.Builder
	if code := run([]string{"provision", "--config", cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", r.Port), "--threads", "2"}, &so, &se); code != exitOK {
		t.Fatalf("provision: exit %d: %s", code, se.String())
	}
	waitReplica(t, r, "db", p.GTIDBinlogPos(t), 30*time.Second)

	target := mariadbtest.Start(t, mariadbtest.Options{Stock: true, ServerID: 701})
	targetAddr := fmt.Sprintf("root@127.0.0.1:%d", target.Port)
	so.Reset()
	se.Reset()
	began := time.Now()
	if code := run([]string{"drill", "--config", cfg, "--source", "db", "--target", targetAddr, "--replica", fmt.Sprintf("root@127.0.0.1:%d", r.Port),
		"--threads", "2", "--json"}, &so, &se); code != exitOK {
		t.Fatalf("drill: exit %d: %s %s", code, so.String(), se.String())
	}
	t.Logf("drill with --replica took %s", time.Since(began).Round(time.Millisecond))
	var res understudy.DrillResult
	if err := json.Unmarshal([]byte(so.String()), &res); err != nil {
		t.Fatalf("drill --json: %v: %s", err, so.String())
	}
	t.Logf("proved: %s", res.Proved)
	if !res.OK || res.Snapshot != m1.ID || !res.Position.Equal(m2.Position) || res.Transactions != 3 || res.RTOSeconds <= 0 || res.Bytes <= 0 ||
		!strings.Contains(res.Proved, fmt.Sprintf("the backup replica 127.0.0.1:%d equals the backups restored at GTID", r.Port)) {
		t.Fatalf("drill result %+v", res)
	}
	if n := target.QueryString(t, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"); n != "0" ||
		target.QueryString(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'test'") != "1" {
		t.Fatalf("after the drill the target has %s tables, or lost its empty test database", n)
	}

	// A drill from the command line shows in the running run.
	st := runStatusOf(t, httpAddr)
	if st.LastDrill == nil || !st.LastDrill.OK || !st.LastDrill.Time.Equal(res.Time) || st.LastSnapshot == nil || st.LastSnapshot.ID != m2.ID || !st.LastSnapshot.Position.Equal(m2.Position) {
		t.Fatalf("/status: last drill %+v, last snapshot %+v", st.LastDrill, st.LastSnapshot)
	}
	metrics := runMetricsOf(t, httpAddr)
	for name, want := range map[string]float64{"understudy_drill_last_ok": 1, "understudy_drill_failures_total": 0, "understudy_snapshot_failures_total": 0,
		"understudy_drill_rto_seconds": res.RTOSeconds, "understudy_drill_last_success_timestamp_seconds": float64(res.Time.UnixNano()) / 1e9,
		"understudy_snapshot_last_success_timestamp_seconds": float64(m2.Finished.UnixNano()) / 1e9, "understudy_snapshot_last_bytes": float64(m2.Size())} {
		if got, ok := metrics[name]; !ok || !near(got, want) {
			t.Errorf("/metrics: %s{source=\"db\"} = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if d := metrics["understudy_snapshot_last_duration_seconds"]; d <= 0 || d > 60 {
		t.Errorf("/metrics: understudy_snapshot_last_duration_seconds %v", d)
	}
	for _, args := range [][]string{{"status"}, {"info", "--source", "db"}} {
		so.Reset()
		if code := run(append(args, "--config", cfg), &so, &se); code != exitOK || !strings.Contains(so.String(), "last drill:") ||
			!strings.Contains(so.String(), "passed at "+res.Time.Format(time.RFC3339)) || !strings.Contains(so.String(), m2.ID) {
			t.Fatalf("%s: exit %d:\n%s", args[0], code, so.String())
		}
	}
	t.Logf("understudy status:\n%s", so.String())

	// A damaged snapshot: exit 3, one line, and a failure in run.
	file := m1.Databases[0].Tables[0].Chunks[0].File
	chunk := filepath.Join(adir, "snapshots", m1.ID, file)
	mariadbtest.FlipByte(t, chunk, 20)
	so.Reset()
	se.Reset()
	code := run([]string{"drill", "--config", cfg, "--source", "db", "--target", targetAddr}, &so, &se)
	lines := strings.Split(strings.TrimSpace(se.String()), "\n") // the log, then the error
	if last := lines[len(lines)-1]; code != exitProblem || !strings.HasPrefix(last, "understudy drill: problem found: snapshot "+m1.ID+" did not restore") ||
		!strings.Contains(last, "damage found: snapshot "+m1.ID+": "+file) || !strings.Contains(so.String(), "FAILED") {
		t.Fatalf("drill of a damaged snapshot: exit %d, stdout %q, last line %q; want %d", code, so.String(), last, exitProblem)
	}
	t.Log(lines[len(lines)-1])
	mariadbtest.FlipByte(t, chunk, 20)
	metrics = runMetricsOf(t, httpAddr)
	if metrics["understudy_drill_last_ok"] != 0 || metrics["understudy_drill_failures_total"] != 1 || !near(metrics["understudy_drill_rto_seconds"], res.RTOSeconds) {
		t.Fatalf("/metrics after a failed drill: last_ok %v, failures %v, rto %v", metrics["understudy_drill_last_ok"], metrics["understudy_drill_failures_total"], metrics["understudy_drill_rto_seconds"])
	}
	if d := runStatusOf(t, httpAddr).LastDrill; d == nil || d.OK || !strings.Contains(d.Error, "damage found") {
		t.Fatalf("/status after a failed drill: %+v", d)
	}

	// A backup replica that drifted from the backups: exit 3, naming the row.
	r.Exec(t, "SET STATEMENT sql_log_bin=0 FOR UPDATE shop.t SET v = 'drift' WHERE id = 7")
	so.Reset()
	se.Reset()
	code = run([]string{"drill", "--config", cfg, "--source", "db", "--target", targetAddr, "--replica", fmt.Sprintf("root@127.0.0.1:%d", r.Port)}, &so, &se)
	lines = strings.Split(strings.TrimSpace(se.String()), "\n")
	if last := lines[len(lines)-1]; code != exitProblem || !strings.Contains(last, fmt.Sprintf("problem found: the backup replica 127.0.0.1:%d differs from the backups restored at GTID", r.Port)) ||
		!strings.Contains(last, "shop.t (primary key)") || !strings.Contains(last, "changed (7)") {
		t.Fatalf("drill with a drifted replica: exit %d, last line %q; want %d", code, last, exitProblem)
	}
	t.Log(lines[len(lines)-1])
	r.Exec(t, "SET STATEMENT sql_log_bin=0 FOR UPDATE shop.t SET v = 'first' WHERE id = 7")
	failedAt := runStatusOf(t, httpAddr).LastDrill
	if failedAt == nil || failedAt.OK || !strings.Contains(failedAt.Error, "differs") || runMetricsOf(t, httpAddr)["understudy_drill_failures_total"] != 2 {
		t.Fatalf("/status after a drill with a drifted replica: %+v", failedAt)
	}
	stop()

	// drill.every: run drills by itself, on a throwaway server.
	b, _ = os.ReadFile(cfg)
	if err := os.WriteFile(cfg, append(b, "    drill:\n      every: 3s\n      threads: 2\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	startRun(t, cfg)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if st, err := tryRunStatus(httpAddr); err == nil && st.LastDrill != nil && st.LastDrill.Time.After(failedAt.Time) {
			d := st.LastDrill
			if !d.OK || !d.Position.Equal(m2.Position) {
				t.Fatalf("the scheduled drill: %+v", d)
			}
			t.Logf("scheduled drill: %s", describeDrill(d))
			metrics = runMetricsOf(t, httpAddr)
			if metrics["understudy_drill_last_ok"] != 1 || !near(metrics["understudy_drill_last_success_timestamp_seconds"], float64(d.Time.UnixNano())/1e9) ||
				!near(metrics["understudy_drill_rto_seconds"], d.RTOSeconds) || metrics["understudy_drill_failures_total"] != 0 {
				t.Fatalf("/metrics after the scheduled drill: %v", metrics)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no scheduled drill within 90s")
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func near(a, b float64) bool { return a-b < 1e-3 && b-a < 1e-3 }

// runStatusOf reads the only source's status from run's /status.
func runStatusOf(t *testing.T, addr string) understudy.SourceStatus {
	t.Helper()
	st, err := tryRunStatus(addr)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// tryRunStatus reads the only source's status from run's /status, if it
// answers.
func tryRunStatus(addr string) (understudy.SourceStatus, error) {
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return understudy.SourceStatus{}, err
	}
	defer resp.Body.Close()
	var sts []understudy.SourceStatus
	if err := json.NewDecoder(resp.Body).Decode(&sts); err != nil || len(sts) != 1 {
		return understudy.SourceStatus{}, fmt.Errorf("/status: %d sources, %v", len(sts), err)
	}
	return sts[0], nil
}

// runMetricsOf reads run's /metrics of source db: name → value.
func runMetricsOf(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	httpGet(t, "http://"+addr+"/metrics", func(body []byte) {
		for _, line := range strings.Split(string(body), "\n") {
			name, rest, ok := strings.Cut(line, `{source="db"} `)
			if !ok || strings.HasPrefix(name, "#") {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			out[name] = v
		}
	})
	return out
}
