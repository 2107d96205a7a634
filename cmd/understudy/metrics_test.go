package main

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestSemiSyncMetrics: understudy_semi_sync_active is 1 while a
// semi_sync source streams as a semi-sync replica, 0 once a session began
// asynchronously because the primary turned rpl_semi_sync_master_enabled
// off, and 1 again after it turned it back on; each fall back to
// asynchronous counts once in understudy_semi_sync_fallbacks_total. Also:
// the source's state, its archived bytes, and its generation after a
// restart of run on an existing archive.
func TestSemiSyncMetrics(t *testing.T) {
	p := startPrimary(t, 1, 1, "--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-master-wait-no-slave=OFF")
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9800, semiSync: true})
	addr := setHTTPListen(t, cfg)
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(100))")
	stop := startRun(t, cfg)
	url := "http://" + addr + "/metrics"

	waitMetric(t, url, `understudy_semi_sync_active{source="db"}`, 1)
	wantMetric(t, url, `understudy_semi_sync_fallbacks_total{source="db"}`, 0)
	wantMetric(t, url, `understudy_source_state{source="db",state="streaming"}`, 1)
	wantMetric(t, url, `understudy_source_state{source="db",state="starting"}`, 0)
	// Semi-sync: each commit returns once understudy acknowledged it.
	p.Exec(t, "INSERT INTO app.t VALUES (1, REPEAT('x', 100))")
	if got := p.QueryString(t, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='RPL_SEMI_SYNC_MASTER_YES_TX'"); got == "0" {
		t.Fatalf("Rpl_semi_sync_master_yes_tx is 0 after a commit: understudy did not acknowledge it")
	}
	if got := metricValue(t, url, `understudy_archived_transaction_bytes_total{source="db"}`); got < 100 {
		t.Fatalf("understudy_archived_transaction_bytes_total %v after a 100-byte row, want at least 100", got)
	}

	// The primary turns semi-sync off: the next session is asynchronous.
	p.Exec(t, "SET GLOBAL rpl_semi_sync_master_enabled = OFF")
	killDump(t, p)
	waitMetric(t, url, `understudy_semi_sync_fallbacks_total{source="db"}`, 1)
	waitMetric(t, url, `understudy_source_streaming{source="db"}`, 1)
	wantMetric(t, url, `understudy_semi_sync_active{source="db"}`, 0)
	// Another asynchronous session is no new fall back.
	killDump(t, p)
	waitMetric(t, url, `understudy_reconnects_total{source="db"}`, 2)
	waitMetric(t, url, `understudy_source_streaming{source="db"}`, 1)
	wantMetric(t, url, `understudy_semi_sync_fallbacks_total{source="db"}`, 1)

	// And on again.
	p.Exec(t, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
	killDump(t, p)
	waitMetric(t, url, `understudy_semi_sync_active{source="db"}`, 1)
	wantMetric(t, url, `understudy_semi_sync_fallbacks_total{source="db"}`, 1)

	// A restart on the existing archive: the generation is known at once.
	stop()
	startRun(t, cfg)
	waitMetric(t, url, `understudy_source_streaming{source="db"}`, 1)
	wantMetric(t, url, `understudy_archive_generation{source="db"}`, 1)
	wantMetric(t, url, `understudy_semi_sync_fallbacks_total{source="db"}`, 0)
}

// setHTTPListen gives the config's http.listen a free loopback address and
// returns it.
func setHTTPListen(t *testing.T, cfg string) string {
	t.Helper()
	addr := freeAddr(t)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), `listen: "off"`, "listen: "+addr, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return addr
}

// killDump kills the primary's binlog dump threads: understudy reconnects.
func killDump(t *testing.T, p *mariadbtest.Server) {
	t.Helper()
	rows, err := p.DB(t).Query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) == 0 {
		t.Fatal("no binlog dump thread on the primary")
	}
	for _, id := range ids {
		p.Exec(t, fmt.Sprintf("KILL %d", id))
	}
}

// metricValue reads one sample of /metrics at url, named as it is
// exposed (name{labels}, labels sorted by name): NaN when it is absent or
// /metrics cannot be read (run is starting).
func metricValue(t *testing.T, url, sample string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return math.NaN()
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return math.NaN()
}

func wantMetric(t *testing.T, url, sample string, want float64) {
	t.Helper()
	if got := metricValue(t, url, sample); got != want {
		t.Fatalf("%s = %v, want %v", sample, got, want)
	}
}

// waitMetric waits up to 20 s for a sample of /metrics to equal want.
func waitMetric(t *testing.T, url, sample string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := metricValue(t, url, sample)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 20 s, want %v", sample, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
