package archive

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// ExportResult says what Export wrote.
type ExportResult struct {
	Files        []string
	Transactions int64
	Bytes        int64
	// Position is the position after the last exported transaction.
	Position understudy.Position
	// Reached reports whether the stop point was met inside the archive.
	Reached bool
}

// Export writes the archive's transactions up to stop as ordinary binlog
// files in outDir, one per archived file that has something to export.
// The files are written atomically and can be replayed with
// `mariadb-binlog FILES | mariadb`. A directory that holds binlog files
// already is refused (`mariadb-binlog dir/*` would replay them too), and
// so is a --before-gtid point the span does not hold exactly, before
// anything is written; on a later error the files written are removed.
func Export(a *Archive, outDir string, stop understudy.StopPoint) (res ExportResult, err error) {
	if err := stop.Validate(); err != nil {
		return res, err
	}
	// One generation only: an export never crosses a gap.
	span, err := a.SpanFor(stop)
	if err != nil {
		return res, err
	}
	release, err := a.Hold(span.Files[0])
	if err != nil {
		return res, err
	}
	defer release()
	if !stop.BeforeGTID.IsZero() {
		found := false
		for _, fi := range span.Files {
			recs, err := a.Records(fi)
			if err != nil {
				return res, err
			}
			for _, r := range recs {
				found = found || r.GTID == stop.BeforeGTID
			}
		}
		if !found {
			return res, fmt.Errorf("GTID %s is not in the archive (archive ends at %s)", stop.BeforeGTID, a.Position())
		}
	}
	if ents, err := os.ReadDir(outDir); err == nil {
		for _, e := range ents {
			if _, ok := fileNumber(e.Name()); ok {
				return res, fmt.Errorf("%s already holds binlog files (%s): export into an empty directory, so that a replay of its files is this export's only", outDir, e.Name())
			}
		}
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			for _, name := range res.Files {
				os.Remove(filepath.Join(outDir, name))
			}
			res.Files = nil
		}
	}()
	walk := NewWalker(stop, span.Start)
	for _, fi := range span.Files {
		if res.Reached {
			break
		}
		recs, err := a.Records(fi)
		if err != nil {
			return res, err
		}
		if len(recs) == 0 {
			continue
		}
		r, err := a.OpenFile(fi)
		if err != nil {
			return res, err
		}
		n, err := exportFile(r, recs, filepath.Join(outDir, fi.Name), walk, &res)
		r.Close()
		if err != nil {
			return res, fmt.Errorf("exporting %s: %w", fi.Name, err)
		}
		if n > 0 {
			res.Files = append(res.Files, fi.Name)
		}
	}
	if !stop.BeforeGTID.IsZero() && !res.Reached {
		return res, fmt.Errorf("GTID %s is not in the archive (archive ends at %s)", stop.BeforeGTID, a.Position())
	}
	if !stop.UntilGTID.IsZero() && !a.Position().ContainsPosition(stop.UntilGTID) {
		return res, fmt.Errorf("position %s is beyond the archive (archive ends at %s)", stop.UntilGTID, a.Position())
	}
	return res, nil
}

func exportFile(r *FileReader, recs []Record, path string, walk *Walker, res *ExportResult) (int64, error) {
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp)
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := binlog.NewWriter(bw, 0, r.Checksum)
	if err := w.WriteHeader(r.FormatDescription, walk.Reached(), 0); err != nil {
		return 0, err
	}
	var n int64
	ev := r.Events(r.DataStart, int64(recs[len(recs)-1].End))
	for _, rec := range recs {
		step := walk.Next(rec.GTID, rec.Time)
		if step == Stop {
			res.Reached = true
			break
		}
		include := step == Apply
		// Events of the archive between transactions (INCIDENT and the like)
		// go with the transaction that follows them.
		for ev.Offset() < int64(rec.End) {
			e, err := ev.Next()
			if err != nil {
				// The index says the transaction ends at rec.End: an event
				// that cannot be read before it is damage.
				if !errors.Is(err, understudy.ErrCorrupt) {
					err = fmt.Errorf("%w: %v", understudy.ErrCorrupt, err)
				}
				return n, fmt.Errorf("transaction %s at offset %d: %w", rec.GTID, ev.Offset(), err)
			}
			if include {
				if err := w.WriteEvent(e); err != nil {
					return n, err
				}
			}
		}
		if include {
			n++
			res.Position = walk.Reached()
			res.Transactions++
		}
		if walk.Done() {
			res.Reached = true
			break
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	if err := f.Close(); err != nil {
		return n, err
	}
	res.Bytes += w.Offset()
	if err := os.Rename(tmp, path); err != nil {
		return n, err
	}
	return n, SyncDir(filepath.Dir(path))
}
