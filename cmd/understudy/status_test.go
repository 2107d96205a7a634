package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
)

// TestStatusAndMetrics checks `understudy status` against a running
// `understudy run`, its /metrics, and the fallback to the archive on disk.
func TestStatusAndMetrics(t *testing.T) {
	p := startPrimary(t, 1, 8)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9700})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), `listen: "off"`, "listen: "+addr, 1)), 0o644)

	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY)")
	p.Exec(t, "INSERT INTO app.t VALUES (1), (2)")
	stop := startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 20*time.Second)
	want := p.GTIDBinlogPos(t)

	var st []understudy.SourceStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		var so, se strings.Builder
		if code := run([]string{"status", "--config", cfg, "--json"}, &so, &se); code != 0 {
			t.Fatalf("status exited %d: %s", code, se.String())
		}
		if err := json.Unmarshal([]byte(so.String()), &st); err != nil {
			t.Fatalf("status --json: %v: %s", err, so.String())
		}
		if st[0].State == understudy.StateStreaming && st[0].Position == want && st[0].SecondsBehind != nil && *st[0].SecondsBehind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v, want streaming at %s and 0 s behind", st[0], want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st[0].LastCommit == nil || time.Since(*st[0].LastCommit) > time.Minute || st[0].BytesArchived == 0 || st[0].PrimaryVersion == "" {
		t.Fatalf("incomplete status %+v", st[0])
	}

	var so, se strings.Builder
	run([]string{"status", "--config", cfg}, &so, &se)
	if !strings.Contains(so.String(), "streaming") || !strings.Contains(so.String(), want) {
		t.Fatalf("status table:\n%s", so.String())
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`understudy_archived_transactions_total{source="db"}`, `understudy_source_streaming{source="db"} 1`, `understudy_archived_bytes{source="db"}`} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	stop()
	so.Reset()
	run([]string{"status", "--config", cfg, "--json"}, &so, &se)
	json.Unmarshal([]byte(so.String()), &st)
	if got := fmt.Sprint(st[0].State, " ", st[0].Position); got != "stopped "+want {
		t.Fatalf("status after stop: %q, want %q", got, "stopped "+want)
	}
}
