// Package archive owns the on-disk layout of a source's archive: native
// binlog files, their transaction indexes and the manifest of sealed files.
// Writer.Write takes the stream's raw events and cuts them into whole
// transactions; recovery cuts a file's tail with the same assembler. It
// recovers the tail after a crash and writes only through
// temp-file + fsync + rename + directory fsync. docs/archive-format.md
// describes the layout byte by byte.
package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
	// ManifestSHA256 protects the manifest itself (see MarshalChecked). It
	// is set in the file, not in memory: writeManifest computes it, and
	// readManifest checks it. A manifest written before it existed has
	// none; it gets one when it is next written.
	ManifestSHA256 string     `json:"manifest_sha256,omitempty"`
	Version        int        `json:"version"`
	Files          []FileInfo `json:"files"`
	// Generations lists every generation the archive has had, oldest
	// first. An archive written before generations existed has none
	// recorded: it is one generation that begins with its first file.
	Generations []Generation `json:"generations,omitempty"`
	// PrunedThrough is the number of the newest file that retention
	// removed; files numbered up to it are gone and any left behind by a
	// crash are deleted on start.
	PrunedThrough int `json:"pruned_through,omitempty"`
	// EvictedThrough is the number of the newest file whose local copy was
	// removed because a store holds it (storage.local_keep, Writer.Evict):
	// the files numbered up to it (and after PrunedThrough) stay in the
	// manifest, and readers fetch them from the store. A local copy of
	// one, fetched back by a reader, is a cache.
	EvictedThrough int `json:"evicted_through,omitempty"`

	// unchecked is set when the manifest read had no checksum.
	unchecked bool
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
	// Evicted is set when its local copy was removed because a store
	// holds it (see Manifest.EvictedThrough; computed when the archive is
	// read, not stored).
	Evicted bool `json:"-"`
}

func readManifest(dir string) (Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return Manifest{Version: 1}, nil
	}
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	checked, err := DecodeChecked(path, b, &m)
	if err != nil {
		return Manifest{}, err
	}
	m.unchecked = !checked
	if m.Version != 1 {
		return Manifest{}, fmt.Errorf("%s: unsupported manifest version %d", path, m.Version)
	}
	m.ManifestSHA256 = ""
	return m, nil
}

func writeManifest(dir string, m Manifest) error {
	m.ManifestSHA256, m.unchecked = "", false
	b, err := MarshalChecked(&m)
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, ManifestName), b)
}

// checksumKey is the manifests' own checksum field; it must be the first
// field of the struct, so that json.MarshalIndent writes it on line 2.
const checksumKey = `  "manifest_sha256": "`

// MarshalChecked encodes a manifest (the archive's or a snapshot's) as
// indented JSON that protects itself: v is encoded with
// json.MarshalIndent(v, "", "  ") plus a newline, its first field
// (`json:"manifest_sha256,omitempty"`, left empty) absent; then the line
// `  "manifest_sha256": "<hex sha256 of those bytes>",` is inserted after
// the opening brace. Removing that line gives back exactly the hashed
// bytes, so every byte of the file is covered (see DecodeChecked).
func MarshalChecked(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if !bytes.HasPrefix(b, []byte("{\n  \"")) || bytes.HasPrefix(b, []byte("{\n"+checksumKey)) {
		return nil, fmt.Errorf("manifest: want a non-empty JSON object without its checksum, got %.40q", b)
	}
	sum := sha256.Sum256(b)
	out := make([]byte, 0, len(b)+len(checksumKey)+len(sum)*2+3)
	out = append(out, "{\n"...)
	out = append(out, checksumKey...)
	out = append(out, hex.EncodeToString(sum[:])...)
	out = append(out, "\",\n"...)
	return append(out, b[2:]...), nil
}

// DecodeChecked decodes the manifest b, read from path, into v strictly
// (an unknown field, a flipped byte in a key name, trailing data are
// errors) and checks the checksum that MarshalChecked wrote. checked is
// false for a manifest that has no checksum (written before it existed),
// which is accepted. Every error wraps understudy.ErrCorrupt and names
// path.
func DecodeChecked(path string, b []byte, v any) (checked bool, err error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", path, understudy.ErrCorrupt, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return false, corrupt("%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return false, corrupt("data after the JSON object (offset %d)", dec.InputOffset())
	}
	// The decoded value's checksum field, as the decoder saw it (it
	// matches keys case-insensitively, and the last of duplicates wins).
	var probe struct {
		Sum string `json:"manifest_sha256"`
	}
	json.Unmarshal(b, &probe)
	line := []byte("{\n" + checksumKey)
	if !bytes.HasPrefix(b, line) {
		if probe.Sum != "" {
			return false, corrupt("the manifest_sha256 field is not the one written on its second line")
		}
		return false, nil
	}
	rest := b[len(line):]
	if len(rest) < 64+3 || string(rest[64:67]) != "\",\n" {
		return false, corrupt("malformed manifest_sha256 line")
	}
	want := string(rest[:64])
	if probe.Sum != want {
		return false, corrupt("the manifest_sha256 field is not the one written on its second line")
	}
	h := sha256.New()
	h.Write([]byte("{\n"))
	h.Write(rest[67:])
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return false, corrupt("sha256 of the manifest is %s, its manifest_sha256 says %s", got, want)
	}
	return true, nil
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
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
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

// Tighten makes dir and everything under it private to its owner: files
// that group or others may read become 0600 (0700 if executable),
// directories 0700. Archives and snapshots written by understudy before
// it made everything private had 0644 files and 0755 directories. It
// returns how many modes it changed.
func Tighten(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		if perm&0o077 == 0 {
			return nil
		}
		if err := os.Chmod(path, perm&^0o077); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// ReadManifest reads the manifest of the archive in dir; an archive that
// has none yet has an empty one. A damaged manifest is an error wrapping
// understudy.ErrCorrupt.
func ReadManifest(dir string) (Manifest, error) { return readManifest(dir) }

// WriteManifest writes m as the manifest of the archive in dir, atomically
// and with its checksum (MarshalChecked). It is for whoever rebuilds an
// archive directory (remote.View); the writer keeps its own.
func WriteManifest(dir string, m Manifest) error { return writeManifest(dir, m) }

// IndexName is the name of the index of the archived file name.
func IndexName(name string) string { return name + indexSuffix }

// FileNumber returns the number of the archived file name (binlog.000042
// is 42), and whether name is one.
func FileNumber(name string) (int, bool) { return fileNumber(name) }
