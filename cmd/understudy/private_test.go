package main

import (
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPrivateFiles: files that hold row data (snapshot chunks, schema and
// object files, manifests, exported binlogs) are 0600 and their
// directories 0700, even under the usual umask 022.
func TestPrivateFiles(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	p := startPrimary(t, 1, 0)
	p.Exec(t, "GRANT SELECT, RELOAD, SHOW VIEW, TRIGGER, EVENT ON *.* TO "+replUser+"@'%'")
	dir := t.TempDir()
	cfg := writeConfig(t, dir, testSource{name: "db", p: p, serverID: 9700})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, secret VARCHAR(20))")
	p.Exec(t, "INSERT INTO app.t VALUES (1, 'card 4111'), (2, 'card 5500')")
	p.Exec(t, "CREATE VIEW app.v AS SELECT id FROM app.t")
	stop := startRun(t, cfg)
	waitArchived(t, filepath.Join(dir, "archive", "db"), p, 20*time.Second)
	stop()
	if code, _, e := runCmd(t, "snapshot", "--config", cfg, "--source", "db"); code != 0 {
		t.Fatalf("snapshot exited %d: %s", code, e)
	}
	out := filepath.Join(dir, "export")
	if code, _, e := runCmd(t, "binlog", "export", "--config", cfg, "--source", "db", "--dir", out); code != 0 {
		t.Fatalf("export exited %d: %s", code, e)
	}
	kinds := map[string]int{}
	for _, root := range []string{filepath.Join(dir, "archive", "db", "snapshots"), out} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			want := fs.FileMode(0o600)
			if d.IsDir() {
				want = 0o700
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s: mode %#o, want %#o", path, got, want)
			}
			switch {
			case d.IsDir():
				kinds["dir"]++
			case strings.HasSuffix(path, ".tsv.zst"):
				kinds["chunk"]++
			case strings.HasSuffix(path, ".sql"), strings.HasSuffix(path, ".json") && !strings.HasSuffix(path, "manifest.json"):
				kinds["schema or objects"]++
			case strings.HasSuffix(path, "manifest.json"):
				kinds["manifest"]++
			case strings.HasPrefix(filepath.Base(path), "binlog") || strings.Contains(path, "export"):
				kinds["export"]++
			default:
				kinds["other"]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("checked %v", kinds)
	for _, k := range []string{"dir", "chunk", "schema or objects", "manifest", "export"} {
		if kinds[k] == 0 {
			t.Errorf("no %s was checked: %v", k, kinds)
		}
	}
}
