package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlog"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestServeDamagedArchive: one flipped byte in a transaction of the active
// archived file, after the snapshot. `restore` fails within seconds with the
// binlog server's message (file, offset, GTID); a replica of `run`'s binlog
// server stops with it; /status, `understudy status` and /metrics show it.
func TestServeDamagedArchive(t *testing.T) {
	p, dir, _ := snapshotSource(t, "")
	addr, httpAddr := freeAddr(t), freeAddr(t)
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9001, serve: addr})
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(b), `listen: "off"`, `listen: "`+httpAddr+`"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(200))")
	for i := 0; i < 5; i++ {
		p.Exec(t, "INSERT INTO app.t (v) VALUES (REPEAT('a', 100))")
	}
	startRun(t, cfg)
	m := takeSnapshotCmd(t, cfg)
	for i := 0; i < 10; i++ {
		p.Exec(t, "INSERT INTO app.t (v) VALUES (REPEAT('b', 100))")
	}
	adir := filepath.Join(dir, "archive", "db")
	waitArchived(t, adir, p, 30*time.Second)

	// Damage the middle transaction after the snapshot: a byte of its rows
	// event.
	a, err := archive.Open(adir)
	if err != nil {
		t.Fatal(err)
	}
	files := a.Files()
	fi := files[len(files)-1]
	if fi.Sealed {
		t.Fatalf("the last file %s is sealed", fi.Name)
	}
	recs, err := a.Records(fi)
	if err != nil {
		t.Fatal(err)
	}
	var after []archive.Record
	for _, rec := range recs {
		if !m.Position.Contains(rec.GTID) {
			after = append(after, rec)
		}
	}
	if len(after) < 10 {
		t.Fatalf("%d transactions after the snapshot at %s, want 10", len(after), m.Position)
	}
	bad := after[len(after)/2]
	path := filepath.Join(adir, fi.Name)
	evOff := rowsEvent(t, path, bad)
	mariadbtest.FlipByte(t, path, evOff+binlog.HeaderSize+2)
	want := fmt.Sprintf("the archive of source db is damaged: %s at offset %d (transaction %s): event checksum mismatch; run understudy verify", fi.Name, evOff, bad.GTID)

	// restore fails at once, with the message.
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 70})
	t.Setenv("UNDERSTUDY_TARGET_PASSWORD", "")
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() {
		var so, se strings.Builder
		code := run([]string{"restore", "--config", cfg, "--source", "db", "--target", fmt.Sprintf("root@127.0.0.1:%d", target.Port),
			"--until-gtid", p.GTIDBinlogPos(t)}, &so, &se)
		done <- result{code, so.String(), se.String()}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("restore through a damaged archive still runs after 60s")
	}
	t.Logf("restore exited %d after %v", res.code, time.Since(began).Round(time.Millisecond))
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	last := lines[len(lines)-1]
	if res.code == 0 || !strings.HasPrefix(last, "understudy restore: ") || !strings.Contains(last, "Got fatal error 1236 from master") || !strings.Contains(last, want) {
		t.Fatalf("restore exited %d, last line %q; want an error with %q\n%s", res.code, last, want, res.stderr)
	}
	t.Logf("restore: %s", last)
	if got := target.QueryString(t, "SELECT @@global.gtid_slave_pos"); strings.Contains(got, bad.GTID.String()) {
		t.Fatalf("the target applied the damaged transaction: %s", got)
	}

	// A replica of run's binlog server stops with it.
	r := mariadbtest.Start(t, mariadbtest.Options{ServerID: 50})
	startReplicaOf(t, r, "u", addr, "")
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := replicaStatus(t, r, "u")
		if st["Slave_IO_Running"] == "No" && strings.Contains(st["Last_IO_Error"], want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica status after 15s: IO running %q, Last_IO_Error %q; want %q", st["Slave_IO_Running"], st["Last_IO_Error"], want)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// /status, understudy status and /metrics.
	var sts []understudy.SourceStatus
	httpGet(t, "http://"+httpAddr+"/status", func(body []byte) {
		if err := json.Unmarshal(body, &sts); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), `"serve_last_error": "`+want) || !strings.Contains(string(body), `"serve_last_error_time"`) {
			t.Fatalf("/status lacks the binlog server's error:\n%s", body)
		}
	})
	if len(sts) != 1 || sts[0].ServeLastErrorTime == nil || sts[0].ServeLastErrorTime.Before(began) {
		t.Fatalf("/status: %+v", sts)
	}
	var so, se strings.Builder
	if code := run([]string{"status", "--config", cfg}, &so, &se); code != 0 {
		t.Fatalf("status exited %d: %s", code, se.String())
	}
	if !strings.Contains(so.String(), "BINLOG SERVER ERROR at ") || !strings.Contains(so.String(), want) {
		t.Fatalf("understudy status:\n%s", so.String())
	}
	httpGet(t, "http://"+httpAddr+"/metrics", func(body []byte) {
		if !strings.Contains(string(body), `understudy_binlog_server_errors_total{kind="corrupt",source="db"} 1`) ||
			!strings.Contains(string(body), `understudy_binlog_server_errors_total{kind="position",source="db"} 0`) {
			t.Fatalf("/metrics lacks understudy_binlog_server_errors_total:\n%s", body)
		}
	})
}

// rowsEvent returns the offset of the second-to-last event of rec (its
// rows event before the XID).
func rowsEvent(t *testing.T, path string, rec archive.Record) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := int64(rec.Start); off < int64(rec.End); {
		h, err := binlog.ParseHeader(b[off:])
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
		off += int64(h.Size)
	}
	if len(offs) < 3 {
		t.Fatalf("transaction %s has %d events", rec.GTID, len(offs))
	}
	return offs[len(offs)-2]
}

func httpGet(t *testing.T, url string, check func([]byte)) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	check(body)
}
