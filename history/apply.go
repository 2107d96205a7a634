package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/snapshot"
)

// Result says what Apply removed.
type Result struct {
	// Snapshots are the IDs of the snapshots removed.
	Snapshots []string
	// HeldSnapshots are planned snapshots left for a later pass because a
	// restore or a verify holds them (see snapshot.Hold).
	HeldSnapshots []string
	// Files are the archived files removed. Fewer than planned means a
	// reader holds one (see archive.Archive.Hold): it and the files after
	// it are left for a later pass.
	Files []archive.FileInfo
}

// Apply carries out a plan: it removes the planned snapshots of snapRoot
// (each renamed to NAME.partial, the directory fsynced, then deleted; a
// held one is skipped), then the planned archived files through w, which
// stops at a held file. Snapshots go first: files only ever go before the
// anchor, which stays, so no order leaves a kept snapshot without the
// binlogs its window needs. w may be nil when the plan removes no file.
func Apply(ctx context.Context, plan PrunePlan, w *archive.Writer, snapRoot string, store bool, log *slog.Logger) (Result, error) {
	var res Result
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := filepath.Clean(snapRoot)
	for _, l := range plan.Snapshots {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if filepath.Dir(filepath.Clean(l.Dir)) != root {
			return res, fmt.Errorf("snapshot %s: %s is not in %s", l.Manifest.ID, l.Dir, root)
		}
		// With a store, the removal is marked for the store's shipper,
		// which removes the snapshot there too.
		if store {
			if err := snapshot.MarkRemoved(l.Dir); err != nil {
				return res, fmt.Errorf("removing snapshot %s: %w", l.Manifest.ID, err)
			}
		}
		removed, err := snapshot.Remove(l.Dir)
		if store && !removed && !errors.Is(err, os.ErrNotExist) {
			snapshot.ForgetRemoved(root, l.Manifest.ID) // it stays, for now
		}
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue // removed since it was listed
		case err != nil:
			return res, fmt.Errorf("removing snapshot %s: %w", l.Manifest.ID, err)
		case !removed:
			log.Info("snapshot in use by a restore or verify; it is removed at a later pass", "snapshot", l.Manifest.ID)
			res.HeldSnapshots = append(res.HeldSnapshots, l.Manifest.ID)
			continue
		}
		log.Info("snapshot removed by retention", "snapshot", l.Manifest.ID, "gtid_position", l.Manifest.Position.String())
		res.Snapshots = append(res.Snapshots, l.Manifest.ID)
	}
	// The markers of removals (see snapshot.Removed) that no shipper to a
	// store took up within a week: no store is configured.
	if removed, err := snapshot.Removed(root); err == nil {
		for id, at := range removed {
			if time.Since(at) > 7*24*time.Hour {
				snapshot.ForgetRemoved(root, id)
			}
		}
	}
	if plan.KeepFromFile == "" || len(plan.Files) == 0 {
		return res, nil
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if w == nil {
		return res, errors.New("removing archived files needs the archive's writer")
	}
	if len(res.HeldSnapshots) > 0 {
		// A restore or verify that holds a snapshot has not necessarily
		// held its binlogs yet: keep them too.
		keep, err := filesOfHeld(w.Dir(), plan, res.HeldSnapshots)
		if err != nil {
			return res, err
		}
		if keep != "" && fileBefore(keep, plan.KeepFromFile) {
			log.Info("keeping the binlogs of a snapshot in use", "from", keep)
			plan.KeepFromFile = keep
		}
	}
	files, err := w.Prune(plan.KeepFromFile)
	res.Files = files
	if len(files) > 0 {
		log.Info("archived files removed by retention", "files", len(files), "first", files[0].Name, "last", files[len(files)-1].Name, "anchor", plan.Anchor)
	}
	if err != nil {
		return res, fmt.Errorf("removing archived files before %s: %w", plan.KeepFromFile, err)
	}
	return res, nil
}

// filesOfHeld returns the first archived file that the held snapshots'
// replays read (the earliest), "" when none is in the archive.
func filesOfHeld(dir string, plan PrunePlan, held []string) (string, error) {
	a, err := archive.Open(dir)
	if err != nil {
		return "", err
	}
	gens := completeGenerations(a.Generations(), a.Spans())
	files := a.Files()
	isHeld := map[string]bool{}
	for _, id := range held {
		isHeld[id] = true
	}
	first := ""
	for _, l := range plan.Snapshots {
		if !isHeld[l.Manifest.ID] {
			continue
		}
		pos := l.Manifest.Position
		g := generationOf(gens, pos)
		for i := len(files) - 1; i >= 0; i-- {
			if files[i].Generation == g && pos.ContainsPosition(files[i].StartPosition) {
				if first == "" || fileBefore(files[i].Name, first) {
					first = files[i].Name
				}
				break
			}
		}
	}
	return first, nil
}

// fileBefore reports whether archived file a is numbered before b (the
// names are zero-padded to the same width until a million files).
func fileBefore(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
