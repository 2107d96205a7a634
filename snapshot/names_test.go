package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	understudy "github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// TestOddNames: database and table names that are paths (`a/b`, `..`,
// `../../escape`), that look like another table's files (`t.00000`) or a
// snapshot's (a database `users.json`), with '@', spaces and non-ASCII
// letters, each get files of their own inside their database's directory,
// and load back.
func TestOddNames(t *testing.T) {
	ctx := context.Background()
	p := mariadbtest.Start(t, mariadbtest.Options{})
	names := [][2]string{
		{"we/ird", "a/b"}, {"we/ird", ".."}, {"we/ird", "../../escape"}, {"we/ird", "t"}, {"we/ird", "t.00000"},
		{"we/ird", "x@2fy"}, {"we", "ird"}, {"users.json", "t"}, {"..", "schema"}, {"ünï cødé", "tåble 1"},
		// The user's, not the system's mysql and sys (lower_case_table_names=0).
		{"MySQL", "user"}, {"Sys", "t"},
	}
	dbs := map[string]bool{}
	for i, n := range names {
		db, table := quote(n[0]), qualified(n[0], n[1])
		if !dbs[n[0]] {
			p.Exec(t, "CREATE DATABASE "+db)
			dbs[n[0]] = true
		}
		p.Exec(t, "CREATE TABLE "+table+" (id INT PRIMARY KEY, v VARCHAR(20))")
		for j := range i + 1 {
			p.Exec(t, "INSERT INTO "+table+" VALUES (?, ?)", j, n[0]+"."+n[1])
		}
	}
	root := t.TempDir()
	m, dir, err := Take(ctx, Options{Source: "s", DB: p.DB(t), Root: root, Threads: 2, Users: true})
	if err != nil {
		t.Fatal(err)
	}
	// Every file inside the snapshot, in its database's directory, one
	// per name.
	seen := map[string]bool{}
	for _, d := range m.Databases {
		for _, tb := range d.Tables {
			for _, f := range append([]string{tb.Schema}, tb.Chunks[0].File) {
				if seen[f] {
					t.Errorf("%s.%s: %s is another table's file", d.Name, tb.Name, f)
				}
				seen[f] = true
				if !filepath.IsLocal(f) || filepath.Dir(f) != filepath.Dir(d.Schema) || strings.Count(f, string(filepath.Separator)) != 1 {
					t.Errorf("%s.%s: file %s, outside %s", d.Name, tb.Name, f, filepath.Dir(d.Schema))
				}
			}
		}
	}
	err = filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			t.Errorf("%s is outside the snapshot %s", path, dir)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if problems := VerifyFiles(dir, m); len(problems) > 0 {
		t.Fatalf("files: %v", problems)
	}
	target := mariadbtest.Start(t, mariadbtest.Options{ServerID: 2, NoBinlog: true})
	if err := Load(ctx, target.DB(t), dir, m, LoadOptions{Threads: 2, Verify: true}); err != nil {
		t.Fatal(err)
	}
	var all []string
	for db := range dbs {
		all = append(all, db)
	}
	want := p.Checksums(t, all...)
	if len(want) != len(names) {
		t.Fatalf("%d tables on the source, want %d", len(want), len(names))
	}
	mariadbtest.SameChecksums(t, "the target", want, target.Checksums(t, all...))
}

// TestManifestPathOutside: a manifest that names a file outside its
// snapshot (damaged, or written by hand) is refused as corrupt before
// anything is read or written by its paths.
func TestManifestPathOutside(t *testing.T) {
	for _, bad := range []string{"../other/x.00000.tsv.zst", "/etc/passwd", "db/../../x"} {
		dir := t.TempDir()
		m := &Manifest{Version: 1, ID: "x", Files: map[string]string{"db/schema.sql": "00"},
			Databases: []Database{{Name: "db", Schema: "db/schema.sql", Tables: []Table{{Name: "t", Schema: "db/t.schema.sql", Chunks: []Chunk{{File: bad}}}}}}}
		if err := writeManifest(dir, m); err != nil {
			t.Fatal(err)
		}
		_, err := Read(dir)
		if !errors.Is(err, understudy.ErrCorrupt) || !strings.Contains(err.Error(), "outside the snapshot") {
			t.Errorf("%s: Read returned %v", bad, err)
		}
	}
	// Sanity: the same manifest with a local path reads.
	dir := t.TempDir()
	if err := writeManifest(dir, &Manifest{Version: 1, ID: "x", Files: map[string]string{"db/t.00000.tsv.zst": "00"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); err != nil {
		t.Fatal(err)
	}
}

func TestFileName(t *testing.T) {
	for name, want := range map[string]string{
		"orders": "orders", "a/b": "a@2fb", "..": "@2e@2e", "t.00000": "t@2e00000", "x@y": "x@40y",
		"tåble 1": "tåble@201", "Mixed_Case-$": "Mixed_Case-$", "tab\there": "tab@09here",
	} {
		if got := fileName(name); got != want {
			t.Errorf("fileName(%q) = %q, want %q", name, got, want)
		}
	}
}
