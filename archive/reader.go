package archive

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// Archive is a read-only view of a source's archive, taken when Open was
// called. It needs no lock and may be used while a Writer appends: it sees
// the durable transactions that were indexed at Open time.
type Archive struct {
	dir   string
	files []FileInfo
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
	a := &Archive{dir: dir, files: m.Files}
	sealed := map[string]bool{}
	for _, fi := range m.Files {
		sealed[fi.Name] = true
	}
	nums, err := listFiles(dir)
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
	return a, nil
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
	recs, err := a.readIndex(name)
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

// Records returns the index of a file, limited to its durable size.
func (a *Archive) Records(fi FileInfo) ([]Record, error) {
	recs, err := a.readIndex(fi.Name)
	if err != nil {
		return nil, err
	}
	for len(recs) > 0 && int64(recs[len(recs)-1].End) > fi.Size {
		recs = recs[:len(recs)-1]
	}
	return recs, nil
}

func (a *Archive) readIndex(name string) ([]Record, error) {
	path := filepath.Join(a.dir, name)
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path + indexSuffix)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return parseIndex(b, st.Size()), nil
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
