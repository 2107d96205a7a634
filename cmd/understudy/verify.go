package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/history"
	"github.com/understudy-db/understudy/remote"
	"github.com/understudy-db/understudy/snapshot"
)

// errVerify marks a verification that found problems.
var errVerify = fmt.Errorf("verification failed: %w", errProblem)

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfgPath, source string
	var asJSON, remoteToo bool
	fs := newFlagSet("verify", stderr)
	fs.config(&cfgPath)
	fs.source(&source)
	fs.json(&asJSON)
	fs.BoolVar(&remoteToo, "remote", false, "also re-read every object of the source in the store (storage.s3) and check its sha256; with the identity, also its content")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, _, err := openSource(cfgPath, source)
	if err != nil {
		return err
	}
	log := newLogger(stderr, false, false)
	var remoteRep *remote.VerifyReport
	if remoteToo {
		st, _, err := openStore(cfg, log)
		if err != nil {
			return err
		}
		if st == nil {
			return fmt.Errorf("%w: --remote: %w", errUsage, errNoStore)
		}
		r, err := remote.Verify(ctx, *st, source, st.Enc == nil || st.Enc.CanRead())
		if err != nil {
			return fmt.Errorf("source %s in the store: %w", source, err)
		}
		remoteRep = &r
	}
	var rep archive.VerifyReport
	// With an empty archive directory, what the store holds is verified:
	// brought here whole, every object checked on the way (a damaged one
	// is a problem found).
	d, err := readDirs(ctx, cfg, source, true, log)
	if err == nil {
		err = d.fetchAllSnapshots(ctx)
	}
	if errors.Is(err, understudy.ErrCorrupt) {
		rep.Problems = append(rep.Problems, archive.Problem{File: storeCacheDir(cfg, source), Detail: err.Error()})
		d = &sourceDirs{dir: storeCacheDir(cfg, source), snapRoot: filepath.Join(storeCacheDir(cfg, source), "snapshots")}
	} else if err != nil {
		return err
	}
	archiveDir, snapRoot := d.dir, d.snapRoot
	var gaps []understudy.Gap
	var gens []archive.Generation
	// Held: retention in a running `understudy run` removes nothing
	// while it is read. A damaged manifest (or file header) keeps the
	// archive from being opened: that is a problem found, not a failure
	// to verify.
	a, release, err := archive.OpenHeld(archiveDir)
	switch {
	case errors.Is(err, understudy.ErrCorrupt):
		rep.Problems = append(rep.Problems, archive.Problem{File: archiveDir, Detail: err.Error() + "; the archive cannot be opened, its files were not checked"})
	case err != nil:
		return err
	default:
		defer release()
		if rep, err = archive.Verify(a); err != nil {
			return err
		}
		gaps, gens = a.Gaps(), a.Generations()
	}
	if gaps == nil {
		gaps = []understudy.Gap{}
	}
	if gens == nil {
		gens = []archive.Generation{}
	}
	type snapReport struct {
		ID       string   `json:"id"`
		Position string   `json:"gtid_position"`
		Problems []string `json:"problems"`
	}
	var snaps []snapReport
	problems := len(rep.Problems)
	list, err := snapshot.List(snapRoot)
	if errors.Is(err, understudy.ErrCorrupt) {
		// A damaged manifest: check the snapshots one by one.
		list = nil
		ents, err := os.ReadDir(snapRoot)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !e.IsDir() || strings.HasSuffix(e.Name(), ".partial") {
				continue
			}
			dir := filepath.Join(snapRoot, e.Name())
			m, err := snapshot.Read(dir)
			switch {
			case errors.Is(err, os.ErrNotExist):
			case err != nil:
				problems++
				snaps = append(snaps, snapReport{ID: e.Name(), Problems: []string{err.Error()}})
			default:
				list = append(list, snapshot.Listed{Dir: dir, Manifest: m})
			}
		}
	} else if err != nil {
		return err
	}
	for _, l := range list {
		release, err := snapshot.Hold(l.Dir) // not pruned while read
		if errors.Is(err, os.ErrNotExist) {
			continue // pruned since it was listed
		}
		if err != nil {
			problems++
			snaps = append(snaps, snapReport{ID: l.Manifest.ID, Position: l.Manifest.Position.String(), Problems: []string{err.Error()}})
			continue
		}
		p := snapshot.VerifyFiles(l.Dir, l.Manifest)
		release()
		problems += len(p)
		snaps = append(snaps, snapReport{ID: l.Manifest.ID, Position: l.Manifest.Position.String(), Problems: p})
	}
	if remoteRep != nil {
		problems += len(remoteRep.Problems)
	}
	if asJSON {
		out := map[string]any{"archive": rep, "snapshots": snaps, "ok": problems == 0, "gaps": gaps, "generations": gens}
		if remoteRep != nil {
			out["store"] = remoteRep
		}
		json.NewEncoder(stdout).Encode(out)
	} else {
		fmt.Fprintf(stdout, "archive of %s: %d files, %d transactions, %s checked: %d problems\n", source, rep.Files, rep.Transactions, humanBytes(rep.Bytes), len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintf(stdout, "  %s: %s\n", p.File, p.Detail)
		}
		for _, g := range gens {
			if g.Gap != nil {
				fmt.Fprintf(stdout, "GAP before generation %d: %s (detected %s; the primary said: %s). This is recorded history, not damage: points inside the gap cannot be restored\n",
					g.ID, history.GapDetail(*g.Gap), g.Gap.Detected.UTC().Format(time.RFC3339), g.Gap.Reason)
			}
			fmt.Fprintf(stdout, "generation %d: begins at GTID position %s (%s), first file %s\n", g.ID, fmtPos(g.StartPosition.String()), g.Reason, g.FirstFile)
		}
		for _, s := range snaps {
			fmt.Fprintf(stdout, "snapshot %s (%s): %d problems\n", s.ID, s.Position, len(s.Problems))
			for _, p := range s.Problems {
				fmt.Fprintf(stdout, "  %s\n", p)
			}
		}
		if r := remoteRep; r != nil {
			what := "stored bytes"
			if r.Content {
				what = "stored bytes and content"
			}
			fmt.Fprintf(stdout, "store: %d objects, %s re-read (%s checked): %d problems\n", r.Objects, humanBytes(r.Bytes), what, len(r.Problems))
			for _, p := range r.Problems {
				fmt.Fprintf(stdout, "  %s\n", p)
			}
		}
	}
	if problems > 0 {
		return fmt.Errorf("%w: %d problems", errVerify, problems)
	}
	return nil
}
