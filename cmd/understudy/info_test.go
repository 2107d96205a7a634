package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/snapshot"
)

// runCmd runs an understudy command in this process and returns its exit
// code, stdout and stderr.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var so, se strings.Builder
	code := run(args, &so, &se)
	return code, so.String(), se.String()
}

// TestInfoAndPrune builds a real archive of several sealed files with two
// snapshots, checks `info --json`, then `prune --dry-run` and `prune` with
// a retention window that rests on the second snapshot: the first snapshot
// and the files before the second go, and a restore still works from what
// is left. `prune` is refused while `understudy run` holds the archive.
func TestInfoAndPrune(t *testing.T) {
	p, dir, cfg := snapshotSource(t, "")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Seal files after a second, so that a short workload spans several.
	os.WriteFile(cfg, []byte(strings.Replace(string(b), "  max_file_size: 4MiB\n", "  max_file_size: 4MiB\n  max_file_age: 1s\n", 1)), 0o644)
	arch := filepath.Join(dir, "archive", "db")
	stop := startRun(t, cfg)
	load := func(seed int64) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		workload(ctx, t, p, "app", seed)
		waitArchived(t, arch, p, 30*time.Second)
		time.Sleep(1500 * time.Millisecond) // the active file is sealed
	}
	load(1)
	s1 := takeSnapshotCmd(t, cfg)
	load(2)
	s2 := takeSnapshotCmd(t, cfg)
	load(3)
	waitArchived(t, arch, p, 30*time.Second)
	stop()

	// info
	code, out, errOut := runCmd(t, "info", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("info exited %d: %s", code, errOut)
	}
	var infos []sourceInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("info --json: %v: %s", err, out)
	}
	si := infos[0]
	if si.Source != "db" || si.Files < 3 || si.Position != p.GTIDBinlogPos(t) || si.Disk == nil || si.Disk.UsedBytes == 0 || si.Disk.TotalBytes == 0 || si.LastCommit == nil {
		t.Fatalf("info: %+v", si)
	}
	if len(si.Generations) != 1 || si.Generations[0].ID != 1 || si.Generations[0].Files != si.Files || len(si.Gaps) != 0 {
		t.Fatalf("info generations %+v, gaps %+v", si.Generations, si.Gaps)
	}
	if len(si.Windows) != 1 || si.Windows[0].PointOnly || si.Windows[0].Snapshot != s1.ID || si.Windows[0].To.String() != si.Position {
		t.Fatalf("info restore windows %+v, want one from %s to %s", si.Windows, s1.ID, si.Position)
	}
	if len(si.Snapshots) != 2 || si.Snapshots[0].ID != s1.ID || si.Snapshots[1].PointOnly || si.Snapshots[1].Bytes == 0 {
		t.Fatalf("info snapshots %+v", si.Snapshots)
	}
	for _, key := range []string{`"restore_windows"`, `"generations"`, `"gaps": []`, `"point_only": false`, `"free_bytes"`} {
		if !strings.Contains(out, key) {
			t.Fatalf("info --json lacks %s: %s", key, out)
		}
	}
	if code, text, _ := runCmd(t, "info", "--config", cfg); code != 0 || !strings.Contains(text, "restore windows:") || !strings.Contains(text, "from snapshot "+s1.ID) {
		t.Fatalf("info text (%d):\n%s", code, text)
	}
	t.Logf("info:\n%s", func() string { _, s, _ := runCmd(t, "info", "--config", cfg); return s }())

	// Without retention, prune removes nothing.
	if code, text, e := runCmd(t, "prune", "--config", cfg); code != 0 || !strings.Contains(text, "no retention is configured") {
		t.Fatalf("prune without retention (%d): %s %s", code, text, e)
	}
	addSnapshotConfig(t, cfg, "retention:\n  window: 1s\n")

	before, err := archive.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd(t, "prune", "--config", cfg, "--source", "db", "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("prune --dry-run exited %d: %s", code, errOut)
	}
	var reps []pruneReport
	if err := json.Unmarshal([]byte(out), &reps); err != nil {
		t.Fatalf("prune --json: %v: %s", err, out)
	}
	rep := reps[0]
	if !rep.DryRun || rep.Anchor != s2.ID || len(rep.Snapshots) != 2 || !rep.Snapshots[0].Remove || rep.Snapshots[1].Remove || len(rep.Files) == 0 || rep.KeepFromFile == "" || rep.Removed != nil {
		t.Fatalf("prune plan %+v", rep)
	}
	if len(rep.Windows) != 1 || rep.Windows[0].Snapshot != s2.ID || rep.Windows[0].PointOnly {
		t.Fatalf("windows after the plan %+v, want one from %s", rep.Windows, s2.ID)
	}
	if after, _ := archive.Open(arch); len(after.Files()) != len(before.Files()) {
		t.Fatal("prune --dry-run removed files")
	}
	if list, _ := snapshot.List(filepath.Join(arch, "snapshots")); len(list) != 2 {
		t.Fatal("prune --dry-run removed a snapshot")
	}
	code, text, _ := runCmd(t, "prune", "--config", cfg, "--dry-run")
	if code != 0 || !strings.Contains(text, "anchor: snapshot "+s2.ID) || !strings.Contains(text, "would remove") || !strings.Contains(text, "dry run: nothing was removed") {
		t.Fatalf("prune --dry-run text (%d):\n%s", code, text)
	}
	t.Logf("prune --dry-run:\n%s", text)

	// Export refuses a point the archive does not hold, before writing.
	out1 := t.TempDir()
	if code, _, e := runCmd(t, "binlog", "export", "--config", cfg, "--source", "db", "--dir", out1, "--until-gtid", "1-1-99999999"); code == 0 || !strings.Contains(e, "is not in the archive") || !strings.Contains(e, "the archive holds generation 1") {
		t.Fatalf("export beyond the archive: exit %d: %s", code, e)
	}
	if ents, _ := os.ReadDir(out1); len(ents) != 0 {
		t.Fatalf("a refused export wrote %d files", len(ents))
	}

	// prune for real.
	code, text, errOut = runCmd(t, "prune", "--config", cfg)
	if code != 0 {
		t.Fatalf("prune exited %d: %s", code, errOut)
	}
	t.Logf("prune:\n%s", text)
	after, err := archive.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Files()[0].Name; got != rep.KeepFromFile || len(after.Files()) != len(before.Files())-len(rep.Files) {
		t.Fatalf("after prune the archive begins with %s (%d files), want %s (%d files)", got, len(after.Files()), rep.KeepFromFile, len(before.Files())-len(rep.Files))
	}
	for _, f := range rep.Files {
		if _, err := os.Stat(filepath.Join(arch, f.Name)); !os.IsNotExist(err) {
			t.Fatalf("%s is still there: %v", f.Name, err)
		}
	}
	list, _ := snapshot.List(filepath.Join(arch, "snapshots"))
	if len(list) != 1 || list[0].Manifest.ID != s2.ID {
		t.Fatalf("snapshots left: %v", list)
	}
	// What is left restores: from the anchor, to the end.
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 80, NoBinlog: true})
	restoreInto(t, cfg, target)
	sameChecksums(t, p, target, "app")
	// The first snapshot's point is gone, and said so.
	if code, _, e := runCmd(t, "binlog", "export", "--config", cfg, "--source", "db", "--dir", t.TempDir(), "--until-gtid", s1.Position.String()); code == 0 || !strings.Contains(e, "is not in the archive") {
		t.Fatalf("export to a pruned point: exit %d: %s", code, e)
	}

	// While run holds the archive, prune refuses and points at --dry-run.
	startRun(t, cfg)
	waitArchived(t, arch, p, 30*time.Second)
	waitLocked(t, arch, 30*time.Second) // the archive is already there: run may not hold it yet
	code, _, errOut = runCmd(t, "prune", "--config", cfg)
	if code != exitLocked || !strings.Contains(errOut, "understudy run is running and prunes by itself; use --dry-run to see the plan") || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
		t.Fatalf("prune while run runs: exit %d: %q", code, errOut)
	}
	if code, _, e := runCmd(t, "prune", "--config", cfg, "--dry-run"); code != 0 {
		t.Fatalf("prune --dry-run while run runs: exit %d: %s", code, e)
	}
}
