package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// Archive is a read-only view of a source's archive, taken when Open was
// called. It needs no lock and may be used while a Writer appends: it sees
// the durable transactions that were indexed at Open time.
type Archive struct {
	dir         string
	files       []FileInfo
	generations []Generation
}

// Open reads the manifest and the index of the active file in dir.
func Open(dir string) (*Archive, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("archive %s: %w", dir, err)
	}
	m, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	a := &Archive{dir: dir, files: m.Files, generations: m.Generations}
	sealed := map[string]bool{}
	for _, fi := range m.Files {
		sealed[fi.Name] = true
	}
	nums, err := listFiles(dir, m.PrunedThrough)
	if err != nil {
		return nil, err
	}
	for _, n := range nums {
		name := FileName(n)
		if sealed[name] {
			continue
		}
		fi, err := a.activeInfo(name)
		if err != nil {
			return nil, err
		}
		a.files = append(a.files, fi)
	}
	for i := range a.files {
		n, _ := fileNumber(a.files[i].Name)
		a.files[i].Generation = m.generationOf(n)
		a.files[i].Evicted = n <= m.EvictedThrough && a.files[i].Sealed
	}
	if len(a.generations) == 0 && len(a.files) > 0 {
		// An archive from before generations: one, from its first file.
		a.generations = []Generation{{ID: 1, FirstFile: a.files[0].Name, StartPosition: a.files[0].StartPosition, Reason: "archive began"}}
	}
	return a, nil
}

// Generations lists the archive's generations, oldest first, including
// those whose files retention has removed.
func (a *Archive) Generations() []Generation { return append([]Generation(nil), a.generations...) }

// Gaps lists the gaps between generations, oldest first.
func (a *Archive) Gaps() []understudy.Gap {
	var out []understudy.Gap
	for _, g := range a.generations {
		if g.Gap != nil {
			out = append(out, *g.Gap)
		}
	}
	return out
}

// Span is what the archive holds of one generation: the transactions after
// Start up to and including End.
type Span struct {
	Generation int
	Start, End understudy.Position
	// FirstTime and LastTime are the commit times of its first and last
	// transactions (0 when it has none).
	FirstTime, LastTime uint32
	Files               []FileInfo
	Transactions, Bytes int64
}

// String describes the span in one line.
func (s Span) String() string {
	out := fmt.Sprintf("generation %d: after %q through %q", s.Generation, s.Start.String(), s.End.String())
	if s.LastTime != 0 {
		out += fmt.Sprintf(" (%s to %s)", time.Unix(int64(s.FirstTime), 0).UTC().Format(time.RFC3339), time.Unix(int64(s.LastTime), 0).UTC().Format(time.RFC3339))
	}
	return out
}

// Spans returns what the archive holds, one span per generation that still
// has files, oldest first.
func (a *Archive) Spans() []Span {
	var out []Span
	for _, fi := range a.files {
		if len(out) == 0 || out[len(out)-1].Generation != fi.Generation {
			out = append(out, Span{Generation: fi.Generation, Start: fi.StartPosition})
		}
		s := &out[len(out)-1]
		s.Files = append(s.Files, fi)
		s.End = fi.EndPosition
		s.Transactions += fi.Transactions
		s.Bytes += fi.Size
		if fi.Transactions > 0 {
			if s.FirstTime == 0 {
				s.FirstTime = fi.FirstTime
			}
			s.LastTime = fi.LastTime
		}
	}
	return out
}

// DescribeSpans lists what the archive holds, for messages.
func (a *Archive) DescribeSpans() string {
	spans := a.Spans()
	if len(spans) == 0 {
		return "the archive is empty"
	}
	var parts []string
	for _, s := range spans {
		parts = append(parts, s.String())
	}
	return "the archive holds " + strings.Join(parts, "; ")
}

// GenerationOf returns the generation of the archived file name, as the
// manifest in dir records it.
func GenerationOf(dir, name string) (int, error) {
	n, ok := fileNumber(name)
	if !ok {
		return 0, fmt.Errorf("%q is not an archived file name", name)
	}
	m, err := readManifest(dir)
	if err != nil {
		return 0, err
	}
	return m.generationOf(n), nil
}

// OpenHeld opens the archive in dir and holds its first file (see Hold),
// so that retention removes nothing while the caller reads the whole
// archive. It retries when pruning removed that file in between.
func OpenHeld(dir string) (*Archive, func(), error) {
	for try := 0; ; try++ {
		a, err := Open(dir)
		if err != nil {
			return nil, nil, err
		}
		// The first file there: files held only in a store (evicted)
		// are not local to hold.
		i := 0
		for i < len(a.files)-1 && a.files[i].Evicted {
			if _, err := os.Stat(filepath.Join(dir, a.files[i].Name)); err == nil {
				break
			}
			i++
		}
		if len(a.files) == 0 {
			return a, func() {}, nil
		}
		release, err := a.Hold(a.files[i])
		if err == nil {
			return a, release, nil
		}
		if !errors.Is(err, ErrPruned) || try == 5 {
			return nil, nil, err
		}
	}
}

// ErrNotHeld means a stop point lies outside what the archive holds.
var ErrNotHeld = errors.New("not in the archive")

// SpanFor returns the span (generation) that holds the stop point, so that
// a reader never walks across a gap: for no stop point the newest span;
// for --until-gtid the span whose end contains the point and whose start
// it contains; for --before-gtid the span holding that transaction; for
// --until-time the span whose first and last commits enclose that time. A point the archive does not hold is an ErrNotHeld
// that names what it holds.
func (a *Archive) SpanFor(stop understudy.StopPoint) (Span, error) {
	spans := a.Spans()
	if len(spans) == 0 {
		return Span{}, fmt.Errorf("%w: the archive is empty", ErrNotHeld)
	}
	switch {
	case !stop.UntilGTID.IsZero():
		for i := len(spans) - 1; i >= 0; i-- {
			if s := spans[i]; stop.UntilGTID.ContainsPosition(s.Start) && s.End.ContainsPosition(stop.UntilGTID) {
				return s, nil
			}
		}
	case !stop.BeforeGTID.IsZero():
		for i := len(spans) - 1; i >= 0; i-- {
			if s := spans[i]; !s.Start.Contains(stop.BeforeGTID) && s.End.Contains(stop.BeforeGTID) {
				return s, nil
			}
		}
	case !stop.UntilTime.IsZero():
		// Between two generations' commits lie the purged transactions,
		// whose commit times are unknown: only times within a span's
		// commits are held.
		t := stop.UntilTime.Unix()
		for i := len(spans) - 1; i >= 0; i-- {
			if s := spans[i]; s.Transactions > 0 && int64(s.FirstTime) <= t && t <= int64(s.LastTime) {
				return s, nil
			}
		}
	default:
		return spans[len(spans)-1], nil
	}
	return Span{}, fmt.Errorf("%w: the point (%s) is not in the archive; %s", ErrNotHeld, stop, a.DescribeSpans())
}

// CheckContinuity reports a break between consecutive files that is not a
// recorded gap between generations: within a generation every file starts
// where the previous one ended.
func (a *Archive) CheckContinuity() error {
	for i := 1; i < len(a.files); i++ {
		prev, fi := a.files[i-1], a.files[i]
		if fi.Generation != prev.Generation {
			continue
		}
		if !fi.StartPosition.Equal(prev.EndPosition) {
			return fmt.Errorf("%w: %s ends at %q but %s starts at %q, and no gap is recorded there", understudy.ErrGap, prev.Name, prev.EndPosition.String(), fi.Name, fi.StartPosition.String())
		}
	}
	return nil
}

func (a *Archive) activeInfo(name string) (FileInfo, error) {
	path := filepath.Join(a.dir, name)
	f, err := os.Open(path)
	if err != nil {
		return FileInfo{}, err
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		return FileInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	recs, _, err := loadIndex(a.dir, FileInfo{Name: name}, 0)
	if errors.Is(err, understudy.ErrCorrupt) {
		// The index holds transactions the data does not: Records and
		// Verify report it; the file's description keeps to the valid
		// records before the damage.
		b, rerr := os.ReadFile(path + indexSuffix)
		if rerr != nil && !os.IsNotExist(rerr) {
			return FileInfo{}, rerr
		}
		st, serr := f.Stat()
		if serr != nil {
			return FileInfo{}, serr
		}
		recs, err = parseIndex(b, st.Size()), nil
	}
	if err != nil {
		return FileInfo{}, err
	}
	fi := FileInfo{Name: name, Size: h.end, StartPosition: h.start, EndPosition: h.start, Transactions: int64(len(recs))}
	for i, r := range recs {
		fi.EndPosition = fi.EndPosition.With(r.GTID)
		if i == 0 {
			fi.FirstTime = r.Time
		}
		fi.LastTime = r.Time
		fi.Size = int64(r.End)
	}
	return fi, nil
}

// Dir is the archive directory.
func (a *Archive) Dir() string { return a.dir }

// Files lists the archived files, oldest first; the last one may be active.
func (a *Archive) Files() []FileInfo { return append([]FileInfo(nil), a.files...) }

// Position is the archive position after the last durable transaction.
func (a *Archive) Position() understudy.Position {
	if len(a.files) == 0 {
		return understudy.Position{}
	}
	return a.files[len(a.files)-1].EndPosition
}

// LastTime is the commit time of the last durable transaction, 0 if none.
func (a *Archive) LastTime() uint32 {
	for i := len(a.files) - 1; i >= 0; i-- {
		if a.files[i].Transactions > 0 {
			return a.files[i].LastTime
		}
	}
	return 0
}

// Bytes is the durable size of all archived files.
func (a *Archive) Bytes() int64 {
	var n int64
	for _, f := range a.files {
		n += f.Size
	}
	return n
}

// Records returns the transactions of a file, limited to its durable
// size. The index is checked against the data and, for a sealed file,
// against the manifest; a damaged or short index is rebuilt from the data
// (see loadIndex). An error wrapping understudy.ErrCorrupt, naming the
// file and offset, means the archive does not hold the file's transactions:
// it is never a shorter list.
func (a *Archive) Records(fi FileInfo) ([]Record, error) {
	recs, _, err := loadIndex(a.dir, fi, fi.Size)
	return recs, err
}

// FileReader reads the events of one archived file.
type FileReader struct {
	f *os.File
	h header
	// FormatDescription is the file's format description event.
	FormatDescription []byte
	// Start is the position before the file's first transaction.
	Start understudy.Position
	// Checksum reports whether events carry a CRC32.
	Checksum bool
	// DataStart is the offset of the first transaction.
	DataStart int64
}

// OpenFile opens an archived file for reading.
func (a *Archive) OpenFile(fi FileInfo) (*FileReader, error) {
	path := filepath.Join(a.dir, fi.Name)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	h, err := readHeader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &FileReader{f: f, h: h, FormatDescription: h.fde, Start: h.start, Checksum: h.checksum, DataStart: h.end}, nil
}

// Events returns a reader of the events in [from, to).
func (r *FileReader) Events(from, to int64) *binlog.Reader {
	return binlog.NewReaderAt(io.NewSectionReader(r.f, from, to-from), from, r.h.checksum)
}

// Close closes the file.
func (r *FileReader) Close() error { return r.f.Close() }

// ErrPruned means an archived file was removed by retention while a reader
// was about to read it.
var ErrPruned = errors.New("removed by retention")

// Hold keeps the archived file fi, and every file after it, from being
// pruned until release is called: it takes a shared lock on the file, and
// Prune stops at a locked file.
func (a *Archive) Hold(fi FileInfo) (release func(), err error) {
	f, err := HoldFile(filepath.Join(a.dir, fi.Name))
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// HoldFile opens path with a shared flock(2), which keeps the file from
// being removed by whoever removes files only under an exclusive,
// non-blocking lock (Writer.Prune, snapshot removal), and checks that it was
// not removed while the lock was awaited. A removed file is an error that
// wraps both ErrPruned and os.ErrNotExist. Closing the file releases it.
func HoldFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrPruned, os.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, err
	}
	held, err1 := f.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, fmt.Errorf("%s: %w: %w", path, ErrPruned, os.ErrNotExist)
	}
	return f, nil
}
