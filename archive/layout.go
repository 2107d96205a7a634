// Package archive owns the on-disk layout of a source's archive: native
// binlog files, their transaction indexes and the manifest of sealed files.
// It recovers the tail after a crash and writes only through
// temp-file + fsync + rename + directory fsync. docs/archive-format.md
// describes the layout byte by byte.
package archive

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/understudy-db/understudy"
)

// File names inside a source's archive directory.
const (
	ManifestName = "manifest.json"
	LockName     = "LOCK"
	filePrefix   = "binlog."
	indexSuffix  = ".idx"
	tmpSuffix    = ".tmp"
)

var fileRe = regexp.MustCompile(`^binlog\.(\d{6,})$`)

// FileName returns the name of the n-th archived binlog file.
func FileName(n int) string { return fmt.Sprintf("%s%06d", filePrefix, n) }

func fileNumber(name string) (int, bool) {
	m := fileRe.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// Manifest lists the sealed files of a source's archive, oldest first,
// its generations and what retention removed.
type Manifest struct {
	Version int        `json:"version"`
	Files   []FileInfo `json:"files"`
	// Generations lists every generation the archive has had, oldest
	// first. An archive written before generations existed has none
	// recorded: it is one generation that begins with its first file.
	Generations []Generation `json:"generations,omitempty"`
	// PrunedThrough is the number of the newest file that retention
	// removed; files numbered up to it are gone and any left behind by a
	// crash are deleted on start.
	PrunedThrough int `json:"pruned_through,omitempty"`
}

// Generation is an unbroken stretch of a source's archive: its files follow
// one another without a missing transaction. A new generation begins when
// the archive is adopted and after a gap (see understudy.Gap); files keep
// their numbering across generations.
type Generation struct {
	ID int `json:"id"`
	// FirstFile is the name of the generation's first archived file.
	FirstFile string `json:"first_file"`
	// StartPosition is the archive position before its first transaction.
	StartPosition understudy.Position `json:"start_position"`
	Started       time.Time           `json:"started"`
	// Reason says why the generation begins where it does.
	Reason string `json:"reason"`
	// Gap is set when the generation follows a gap.
	Gap *understudy.Gap `json:"gap,omitempty"`
}

// FileInfo describes one archived binlog file.
type FileInfo struct {
	Name string `json:"name"`
	// Size is the durable size: for a sealed file its size, for the active
	// file the end of its last durable transaction.
	Size int64 `json:"size"`
	// SHA256 is set once the file is sealed.
	SHA256 string `json:"sha256,omitempty"`
	// StartPosition is the archive position before the file's first
	// transaction (the GTID list in its header).
	StartPosition understudy.Position `json:"start_position"`
	// EndPosition is the position after its last transaction.
	EndPosition  understudy.Position `json:"end_position"`
	Transactions int64               `json:"transactions"`
	// FirstTime and LastTime are the commit times (unix seconds) of the
	// first and last transactions; 0 for an empty file.
	FirstTime uint32 `json:"first_time"`
	LastTime  uint32 `json:"last_time"`
	Sealed    bool   `json:"sealed"`
	// Generation is the generation the file belongs to (computed when
	// the archive is read, not stored).
	Generation int `json:"-"`
}

func readManifest(dir string) (Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if os.IsNotExist(err) {
		return Manifest{Version: 1}, nil
	}
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w: %v", filepath.Join(dir, ManifestName), understudy.ErrCorrupt, err)
	}
	if m.Version != 1 {
		return Manifest{}, fmt.Errorf("%s: unsupported manifest version %d", filepath.Join(dir, ManifestName), m.Version)
	}
	return m, nil
}

func writeManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, ManifestName), append(b, '\n'))
}

// listFiles returns the numbers of the binlog files in dir, ascending,
// leaving out those numbered up to prunedThrough.
func listFiles(dir string, prunedThrough int) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ns []int
	for _, e := range ents {
		if n, ok := fileNumber(e.Name()); ok && n > prunedThrough {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	return ns, nil
}

// WriteFileAtomic writes data to path so that a crash leaves either the old
// file or the new one: write path.tmp, fsync, rename, fsync the directory.
func WriteFileAtomic(path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, unwrapPath(err))
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, unwrapPath(err))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return &SyncError{Path: path, Err: unwrapPath(err)}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, unwrapPath(err))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, unwrapPath(err))
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return &SyncError{Path: filepath.Dir(path), Err: err}
	}
	return nil
}

// SyncDir fsyncs a directory so that renames and creations in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// generationOf returns the generation of file number n: the newest one
// whose first file is at or before n (1 when none is recorded).
func (m *Manifest) generationOf(n int) int {
	id := 1
	for _, g := range m.Generations {
		if first, ok := fileNumber(g.FirstFile); ok && first <= n {
			id = g.ID
		}
	}
	return id
}

// SyncError is a failed fsync. After one, Linux may have dropped the dirty
// pages while marking them clean, so what was written cannot be trusted:
// the source stops, and a restart recovers from what is really on disk. A
// failed write (a full disk) is not a SyncError.
type SyncError struct {
	Path string
	Err  error
}

func (e *SyncError) Error() string { return "fsync " + e.Path + ": " + e.Err.Error() }

func (e *SyncError) Unwrap() error { return e.Err }
