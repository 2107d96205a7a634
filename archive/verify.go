package archive

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/understudy-db/understudy"
)

// Problem is one thing Verify found wrong.
type Problem struct {
	File   string `json:"file"`
	Detail string `json:"detail"`
}

// VerifyReport is what Verify checked.
type VerifyReport struct {
	Files        int   `json:"files"`
	Transactions int64 `json:"transactions"`
	Bytes        int64 `json:"bytes"`
	// Evicted counts the sealed files held only in the store (see
	// Manifest.EvictedThrough): their content is checked there, by
	// `verify --remote`.
	Evicted  int       `json:"evicted,omitempty"`
	Problems []Problem `json:"problems"`
}

// Verify reads the whole archive: every event's CRC32, every sealed file's
// sha256 against the manifest, the index against the data (a damaged
// index is a problem even where readers rebuild it from the data), and GTID
// continuity: within a generation each file starts where the previous
// ended, and within a domain sequence numbers only grow. A generation
// begins at its recorded start position; the gap before it is history
// (see Archive.Gaps), not a problem.
func Verify(a *Archive) (VerifyReport, error) {
	var rep VerifyReport
	problem := func(file, format string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{File: file, Detail: fmt.Sprintf(format, args...)})
	}
	files := a.Files()
	pos := understudy.Position{}
	starts := map[string]Generation{}
	for _, g := range a.Generations() {
		starts[g.FirstFile] = g
	}
	for i, fi := range files {
		rep.Files++
		newGen := i > 0 && fi.Generation != files[i-1].Generation
		switch {
		case newGen:
			if g, ok := starts[fi.Name]; !ok || !g.StartPosition.Equal(fi.StartPosition) {
				problem(fi.Name, "%v: generation %d begins here at %q, but the manifest records no such start", understudy.ErrGap, fi.Generation, fi.StartPosition.String())
			}
		case i > 0 && !fi.StartPosition.Equal(files[i-1].EndPosition):
			problem(fi.Name, "%v: starts at %q but %s ends at %q", understudy.ErrGap, fi.StartPosition.String(), files[i-1].Name, files[i-1].EndPosition.String())
		}
		if i == 0 || newGen {
			pos = fi.StartPosition
		}
		path := filepath.Join(a.Dir(), fi.Name)
		if _, err := os.Stat(path); fi.Evicted && os.IsNotExist(err) {
			rep.Evicted++
			pos = fi.EndPosition
			continue
		}
		if fi.Sealed {
			sum, err := FileSHA256(path)
			switch {
			case err != nil:
				problem(fi.Name, "%v", err)
				continue
			case sum != fi.SHA256:
				problem(fi.Name, "sha256 %s, the manifest says %s", sum, fi.SHA256)
			}
		}
		recs, damage, err := loadIndex(a.Dir(), fi, fi.Size)
		if damage != nil {
			problem(fi.Name, "damaged index: %v", damage)
		}
		if err != nil {
			problem(fi.Name, "%v", err)
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			problem(fi.Name, "%v", err)
			continue
		}
		h, err := readHeader(f)
		if err != nil {
			f.Close()
			problem(fi.Name, "%v", err)
			continue
		}
		res, err := scanTail(f, h.end, h.checksum)
		f.Close()
		if err != nil {
			return rep, err
		}
		if res.torn != nil && res.end < fi.Size {
			problem(fi.Name, "unreadable from offset %d: %v", res.end, res.torn)
		}
		scanned := res.records
		for len(scanned) > 0 && int64(scanned[len(scanned)-1].End) > fi.Size {
			scanned = scanned[:len(scanned)-1]
		}
		if len(scanned) != len(recs) {
			problem(fi.Name, "%d transactions in the data, %d in the index", len(scanned), len(recs))
		}
		for j, r := range recs {
			if j < len(scanned) && scanned[j] != r {
				problem(fi.Name, "index record %d (%s at %d) does not match the data (%s at %d)", j, r.GTID, r.Start, scanned[j].GTID, scanned[j].Start)
				break
			}
			if prev, ok := pos.Domain(r.GTID.Domain); ok && r.GTID.Seq <= prev.Seq {
				problem(fi.Name, "GTID %s at offset %d does not follow %s", r.GTID, r.Start, prev)
			}
			pos = pos.With(r.GTID)
			rep.Transactions++
		}
		if !pos.Equal(fi.EndPosition) {
			problem(fi.Name, "ends at %q, the manifest says %q", pos.String(), fi.EndPosition.String())
		}
		rep.Bytes += fi.Size
	}
	return rep, nil
}
