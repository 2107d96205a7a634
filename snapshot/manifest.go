// Package snapshot takes consistent, parallel, compressed logical snapshots
// of a MariaDB server with the exact GTID position they correspond to, and
// loads them back. docs/snapshot-format.md describes the format well enough
// to restore a snapshot with stock tools.
package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
)

// File and directory names of a snapshot.
const (
	ManifestName  = "manifest.json"
	partialSuffix = ".partial"
)

// Manifest describes one complete snapshot. It is written last, and the
// snapshot directory is renamed from NAME.partial to NAME after it.
type Manifest struct {
	// ManifestSHA256 protects the manifest itself: it is the sha256 of the
	// file without this field's line (see archive.MarshalChecked). It is
	// set in the file, not in memory; snapshots of older versions have
	// none.
	ManifestSHA256 string `json:"manifest_sha256,omitempty"`

	Version int    `json:"version"`
	ID      string `json:"id"`
	Source  string `json:"source"`
	// Position is the GTID position of the snapshot in the source's stream:
	// every transaction up to it is in the data, none after it.
	Position understudy.Position `json:"gtid_position"`
	// From is host:port the data was read from; FromReplica tells whether
	// that was a replica of the source.
	From          string `json:"from"`
	FromReplica   bool   `json:"from_replica"`
	ServerVersion string `json:"server_version"`
	// ReplicaGTIDSlavePos is the replica's whole gtid_slave_pos at the
	// snapshot instant, when taken from a replica.
	ReplicaGTIDSlavePos string    `json:"replica_gtid_slave_pos,omitempty"`
	Started             time.Time `json:"started"`
	// PositionTime is when Position was read: the snapshot's data is the
	// state of that instant (absent in snapshots of older versions).
	PositionTime time.Time `json:"position_time,omitempty"`
	Finished     time.Time `json:"finished"`
	// CommitBlockMillis is how long commits were blocked on the server:
	// from before BACKUP STAGE BLOCK_COMMIT was sent (its wait for the
	// commits in progress included) to after BACKUP STAGE END returned.
	CommitBlockMillis float64 `json:"commit_block_ms"`
	Threads           int     `json:"threads"`
	Compression       string  `json:"compression"`
	// Checksum names the chunk checksum expression (see ChecksumSQL).
	Checksum  string     `json:"checksum"`
	Databases []Database `json:"databases"`
	// NonTransactional lists tables whose engine is not covered by the
	// consistent snapshot (MyISAM, Aria, ...): they are copied, but may be
	// inconsistent with the GTID position.
	NonTransactional []string `json:"non_transactional,omitempty"`
	// DefinitionOnly lists the tables ("db.t (ENGINE)") saved without
	// their rows: their engine keeps the data outside this server's own
	// tables (see definitionOnly), and loading it would write it there a
	// second time.
	DefinitionOnly []string `json:"definition_only,omitempty"`
	// Users is the file of accounts, roles and grants ("" if not saved),
	// and Accounts how many it creates.
	Users    string `json:"users,omitempty"`
	Accounts int    `json:"accounts,omitempty"`
	// Files maps every file of the snapshot (relative path) to its sha256.
	Files map[string]string `json:"files"`
}

// Database is one database of a snapshot.
type Database struct {
	Name string `json:"name"`
	// Schema is the file with CREATE DATABASE.
	Schema string  `json:"schema"`
	Tables []Table `json:"tables"`
	// Objects is the file with views, routines, triggers and events, if
	// any; it is applied after the data.
	Objects string `json:"objects,omitempty"`
}

// Table is one table of a snapshot.
type Table struct {
	Name   string `json:"name"`
	Engine string `json:"engine"`
	// Kind is "" for a base table, else KindSequence, KindVersioned or
	// KindVersionedTrx (see those).
	Kind string `json:"kind,omitempty"`
	// Schema is the file with CREATE TABLE.
	Schema string `json:"schema"`
	// Columns are the stored (non-generated) columns, in the order of the
	// data files.
	Columns []string `json:"columns"`
	// Types are the columns' DATA_TYPE, in the same order.
	Types []string `json:"types"`
	// NotNull says, in the same order, which columns are NOT NULL (absent
	// in older manifests: every column may be NULL). A checksum query
	// needs no NULL test for those (see rowHashSQL).
	NotNull []bool `json:"not_null,omitempty"`
	// PrimaryKey lists the primary key's columns; empty for a table without
	// one. Chunks are cut on a key's first column (see planChunks), and
	// each chunk's Where says which rows it holds.
	PrimaryKey []string `json:"primary_key,omitempty"`
	// ChunkIndex names the index the chunks are ranges of, when it is not
	// the primary key; queries over a chunk read through it.
	ChunkIndex string  `json:"chunk_index,omitempty"`
	Chunks     []Chunk `json:"chunks"`

	selects []string // the dump's select list (see dumpExpr)
}

// Chunk is one data file: the rows of a table matching Where.
type Chunk struct {
	File string `json:"file"`
	// Where selects the chunk's rows ("" for the whole table).
	Where string `json:"where"`
	Rows  int64  `json:"rows"`
	// Checksum is ChecksumSQL's result over the chunk inside the snapshot
	// transaction, as a decimal string.
	Checksum string `json:"checksum"`
	// Bytes is the uncompressed size of the data.
	Bytes int64 `json:"bytes"`
	// Compressed is the size of the file.
	Compressed int64 `json:"compressed_bytes"`
}

// ConsistentAt is the instant whose state the snapshot holds: when its
// position was read. For a snapshot without that record, its finish time,
// which is never earlier: a restore to a time never lands past it.
func (m *Manifest) ConsistentAt() time.Time {
	if !m.PositionTime.IsZero() {
		return m.PositionTime
	}
	return m.Finished
}

// Rows counts the rows of all tables.
func (m *Manifest) Rows() int64 {
	var n int64
	for _, d := range m.Databases {
		for _, t := range d.Tables {
			for _, c := range t.Chunks {
				n += c.Rows
			}
		}
	}
	return n
}

// Tables counts the tables.
func (m *Manifest) Tables() int {
	n := 0
	for _, d := range m.Databases {
		n += len(d.Tables)
	}
	return n
}

// Size is the compressed size of the data files.
func (m *Manifest) Size() int64 {
	var n int64
	for _, d := range m.Databases {
		for _, t := range d.Tables {
			for _, c := range t.Chunks {
				n += c.Compressed
			}
		}
	}
	return n
}

// Read reads the manifest of the snapshot in dir.
func Read(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, err
	}
	// Strictly, with its checksum: a damaged manifest is an error that
	// wraps understudy.ErrCorrupt and names the file, never a default.
	var m Manifest
	if _, err := archive.DecodeChecked(filepath.Join(dir, ManifestName), b, &m); err != nil {
		return nil, err
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("%s: unsupported snapshot version %d", dir, m.Version)
	}
	if err := m.checkPaths(); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestName), err)
	}
	m.ManifestSHA256 = ""
	return &m, nil
}

// writeManifest writes m as dir's manifest.json, atomically and with its
// checksum (see archive.MarshalChecked).
func writeManifest(dir string, m *Manifest) error {
	c := *m
	c.ManifestSHA256 = ""
	b, err := archive.MarshalChecked(&c)
	if err != nil {
		return err
	}
	return archive.WriteFileAtomic(filepath.Join(dir, ManifestName), b)
}

// Listed is a snapshot found by List.
type Listed struct {
	Dir      string
	Manifest *Manifest
}

// List returns the complete snapshots in root (a source's snapshots
// directory), oldest first. Partial snapshots are not listed.
func List(root string) ([]Listed, error) {
	ents, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Listed
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), partialSuffix) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		m, err := Read(dir)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		out = append(out, Listed{Dir: dir, Manifest: m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Manifest.Started.Before(out[j].Manifest.Started) })
	return out, nil
}

// VerifyFiles checks that every file of the snapshot in dir exists with
// the sha256 in its manifest, and that every chunk file is listed.
func VerifyFiles(dir string, m *Manifest) []string {
	var problems []string
	for _, d := range m.Databases {
		for _, t := range d.Tables {
			for _, c := range t.Chunks {
				if _, ok := m.Files[c.File]; !ok {
					problems = append(problems, c.File+": not in the manifest's file list")
				}
			}
		}
	}
	names := make([]string, 0, len(m.Files))
	for n := range m.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sum, err := archive.FileSHA256(filepath.Join(dir, n))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", n, err))
		} else if sum != m.Files[n] {
			problems = append(problems, fmt.Sprintf("%s: sha256 %s, the manifest says %s", n, sum, m.Files[n]))
		}
	}
	return problems
}

// Hold marks the snapshot in dir as in use (a shared lock on its
// manifest) until release is called: Prune and Remove leave it alone
// meanwhile. A snapshot removed while the lock was awaited is reported as
// not existing (os.ErrNotExist).
func Hold(dir string) (release func(), err error) {
	f, err := archive.HoldFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// removedPrefix names the markers that Remove leaves beside the
// snapshots it removed (see Removed).
const removedPrefix = ".removed."

// MarkRemoved leaves the marker that says the snapshot in dir is being
// removed by retention, so that the store's shipper removes it from the
// store too (see Removed): a snapshot that merely disappears from the
// directory (removed by hand to free the disk) stays in the store. It is
// written before the removal, and forgotten again (ForgetRemoved) when the
// snapshot stays.
func MarkRemoved(dir string) error {
	return archive.WriteFileAtomic(filepath.Join(filepath.Dir(dir), removedPrefix+filepath.Base(dir)), nil)
}

// Removed lists the IDs of the snapshots under root that MarkRemoved
// marked and whose markers are still there, with the markers' times.
func Removed(root string) (map[string]time.Time, error) {
	ents, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, e := range ents {
		if id, ok := strings.CutPrefix(e.Name(), removedPrefix); ok && !e.IsDir() {
			if fi, err := e.Info(); err == nil {
				out[id] = fi.ModTime()
			}
		}
	}
	return out, nil
}

// ForgetRemoved deletes the marker MarkRemoved left for snapshot id under
// root.
func ForgetRemoved(root, id string) error {
	err := os.Remove(filepath.Join(root, removedPrefix+id))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// Prune removes all but the keep newest complete snapshots under root and
// returns the IDs removed. A snapshot in use (see Hold) is kept for now.
func Prune(root string, keep int) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	list, err := List(root)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, l := range list[:max(0, len(list)-keep)] {
		ok, err := Remove(l.Dir)
		if ok {
			removed = append(removed, l.Manifest.ID)
		}
		if errors.Is(err, os.ErrNotExist) && !ok {
			continue // removed since it was listed
		}
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// Remove removes the complete snapshot in dir, unless it is in use (see
// Hold): then removed is false and err nil. It is first renamed to
// NAME.partial and the parent directory fsynced, so that a crash while it
// is being deleted leaves nothing that looks complete (the next Take
// removes the rest). removed is true as soon as the snapshot is no longer
// listed, even if deleting its files then failed.
func Remove(dir string) (removed bool, err error) {
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if err != nil {
		return false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil // a restore or verify is reading it
		}
		return false, err
	}
	doomed := dir + partialSuffix
	err = os.Rename(dir, doomed)
	f.Close()
	if err != nil {
		return false, err
	}
	// From here on the snapshot is no longer listed: removed is true.
	if err := archive.SyncDir(filepath.Dir(dir)); err != nil {
		return true, err
	}
	return true, os.RemoveAll(doomed)
}
