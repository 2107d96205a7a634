package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/snapshot"
	"github.com/understudy-db/understudy/storage"
)

// objectsName is the commit point of a snapshot in the store: written
// last, it lists every object of the snapshot.
const objectsName = "objects.json"

// SnapshotObjects is a snapshot's commit point in the store.
type SnapshotObjects struct {
	ManifestSHA256 string           `json:"manifest_sha256,omitempty"`
	Version        int              `json:"version"`
	Source         string           `json:"source"`
	ID             string           `json:"id"`
	Writer         string           `json:"writer"`
	Written        time.Time        `json:"written"`
	Objects        []SnapshotObject `json:"objects"`
}

// SnapshotObject is one file of a snapshot in the store.
type SnapshotObject struct {
	// Path is the file's path in the snapshot directory.
	Path string `json:"path"`
	// Size and SHA256 describe the file; StoredSize and StoredSHA256 the
	// object (an age file when Encrypted).
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"`
	StoredSize   int64  `json:"stored_size"`
	StoredSHA256 string `json:"stored_sha256"`
	Encrypted    bool   `json:"encrypted"`
}

func snapshotObject(source, id, path string) string {
	return SnapshotPrefix(source) + id + "/" + path
}

// ShipSnapshot uploads the complete local snapshot l: every file (the
// manifest as it is, every other file encrypted when the store is), then
// its objects.json, the commit point. check is called right before the
// commit point (lease.Check).
func ShipSnapshot(ctx context.Context, st Store, source, writer string, l snapshot.Listed, check func(context.Context) error) (int64, error) {
	release, err := snapshot.Hold(l.Dir)
	if err != nil {
		return 0, err
	}
	defer release()
	var paths []string
	err = filepath.WalkDir(l.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(l.Dir, p)
			paths = append(paths, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	sort.Strings(paths)
	rec := SnapshotObjects{Version: Version, Source: source, ID: l.Manifest.ID, Writer: writer}
	var total int64
	for _, rel := range paths {
		o, err := putSnapshotFile(ctx, st, snapshotObject(source, l.Manifest.ID, rel), filepath.Join(l.Dir, filepath.FromSlash(rel)), rel != snapshot.ManifestName, l.Manifest.Files[rel])
		if err != nil {
			return total, err
		}
		o.Path = rel
		rec.Objects = append(rec.Objects, o)
		total += o.StoredSize
	}
	if check != nil {
		if err := check(ctx); err != nil {
			return total, fmt.Errorf("not committing snapshot %s: %w", l.Manifest.ID, err)
		}
	}
	rec.Written = time.Now().UTC()
	return total, putRecord(ctx, st.Plain, snapshotObject(source, l.Manifest.ID, objectsName), &rec)
}

// putSnapshotFile uploads one file of a snapshot. want is the sha256 the
// snapshot's manifest gives it ("" for a file it does not name): a file
// that changed on disk since (bit rot, a damaged disk) is not shipped, as
// the store would then hold, and later restore, a copy that fails.
func putSnapshotFile(ctx context.Context, st Store, name, path string, encrypt bool, want string) (SnapshotObject, error) {
	f, err := os.Open(path)
	if err != nil {
		return SnapshotObject{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return SnapshotObject{}, err
	}
	sum, err := hashAt(f, fi.Size())
	if err != nil {
		return SnapshotObject{}, err
	}
	if want != "" && sum != want {
		return SnapshotObject{}, fmt.Errorf("%w: %s: sha256 %s, the snapshot's manifest says %s: the local copy is damaged, and is not shipped (run understudy verify)", understudy.ErrCorrupt, path, sum, want)
	}
	o := SnapshotObject{Size: fi.Size(), SHA256: sum}
	s := st
	if !encrypt {
		s.Enc = nil
	}
	o.Encrypted = s.Enc != nil
	if o.StoredSize, o.StoredSHA256, err = s.putData(ctx, name, f, fi.Size()); err != nil {
		return o, err
	}
	return o, nil
}

// RemoteSnapshot is a snapshot the store holds.
type RemoteSnapshot struct {
	ID      string
	Objects SnapshotObjects
}

// ListSnapshots lists the committed snapshots of source in the store,
// oldest first (by ID, which is the start time).
func ListSnapshots(ctx context.Context, st Store, source string) ([]RemoteSnapshot, error) {
	var ids []string
	err := st.Plain.List(ctx, SnapshotPrefix(source), func(i storage.Info) error {
		rest := strings.TrimPrefix(i.Name, SnapshotPrefix(source))
		if id, ok := strings.CutSuffix(rest, "/"+objectsName); ok && !strings.Contains(id, "/") {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []RemoteSnapshot
	for _, id := range ids {
		var rec SnapshotObjects
		if err := getRecord(ctx, st.Plain, snapshotObject(source, id, objectsName), &rec); err != nil {
			return nil, err
		}
		if rec.ID != id || rec.Source != source {
			return nil, corrupt(st.Plain, snapshotObject(source, id, objectsName), "it says it is snapshot %s of source %q", rec.ID, rec.Source)
		}
		out = append(out, RemoteSnapshot{ID: id, Objects: rec})
	}
	return out, nil
}

// MaterializeSnapshots makes root (a snapshots directory) list the store's
// snapshots: each one's manifest.json is written (checked) to root/ID/,
// its other files only when FetchSnapshot asks. Snapshots that the store no
// longer holds are removed from root.
func MaterializeSnapshots(ctx context.Context, st Store, source, root string, snaps []RemoteSnapshot) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, s := range snaps {
		keep[s.ID] = true
		dir := filepath.Join(root, s.ID)
		for _, o := range s.Objects.Objects {
			if o.Path == snapshot.ManifestName {
				if err := fetchSnapshotFile(ctx, st, source, s.ID, dir, o); err != nil {
					return err
				}
			}
		}
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() && !keep[e.Name()] {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
	return nil
}

// FetchSnapshot writes every file of snapshot s into dir, unless it is
// there with its sha256 already, up to fetches files at once.
func FetchSnapshot(ctx context.Context, st Store, source, dir string, s RemoteSnapshot) error {
	return parallel(ctx, fetches, len(s.Objects.Objects), func(ctx context.Context, _, i int) error {
		return fetchSnapshotFile(ctx, st, source, s.ID, dir, s.Objects.Objects[i])
	})
}

func fetchSnapshotFile(ctx context.Context, st Store, source, id, dir string, o SnapshotObject) error {
	if !filepath.IsLocal(filepath.FromSlash(o.Path)) {
		return fmt.Errorf("%w: snapshot %s's objects.json names %q, outside the snapshot", understudy.ErrCorrupt, id, o.Path)
	}
	path := filepath.Join(dir, filepath.FromSlash(o.Path))
	if fi, err := os.Stat(path); err == nil && fi.Size() == o.Size {
		if sum, err := archive.FileSHA256(path); err == nil && sum == o.SHA256 {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	name := snapshotObject(source, id, o.Path)
	b := st.Plain
	if o.Encrypted {
		if st.Enc == nil {
			return fmt.Errorf("%s is encrypted: reading it needs storage.encryption.identity_file: %w", where(st.Plain, name), storage.ErrNoKey)
		}
		b = st.Enc
	}
	rc, err := b.Get(ctx, name, 0, -1)
	if err != nil {
		if errors.Is(err, storage.ErrNotExist) {
			return fmt.Errorf("%w: %s, which snapshot %s's objects.json names, is missing", understudy.ErrCorrupt, where(st.Plain, name), id)
		}
		return err
	}
	defer rc.Close()
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), rc)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil && (n != o.Size || hex.EncodeToString(h.Sum(nil)) != o.SHA256) {
		err = corrupt(st.Plain, name, "%d bytes with sha256 %s; objects.json says %d bytes, %s", n, hex.EncodeToString(h.Sum(nil)), o.Size, o.SHA256)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// deleteSnapshot removes a snapshot from the store: its commit point
// first, so that it is never listed half deleted.
func deleteSnapshot(ctx context.Context, b storage.Backend, source, id string) error {
	if err := b.Delete(ctx, snapshotObject(source, id, objectsName)); err != nil {
		return err
	}
	var names []string
	if err := b.List(ctx, SnapshotPrefix(source)+id+"/", func(i storage.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return err
	}
	for _, n := range names {
		if err := b.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// snapshotInterval is how often the shipper looks for new snapshots.
const snapshotInterval = 5 * time.Second

// shipSnapshots uploads the local snapshots that the store does not hold,
// oldest first, and removes from the store those that retention removed
// locally while this shipper watched (a snapshot the store holds and this
// host never had, from another host, stays), and uploads that never
// committed.
func (s *Shipper) shipSnapshots(ctx context.Context) error {
	local, err := snapshot.List(s.SnapshotRoot)
	if err != nil {
		return err
	}
	remote, err := ListSnapshots(ctx, s.Store, s.Source)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, r := range remote {
		have[r.ID] = true
	}
	isLocal := map[string]bool{}
	if s.seenLocal == nil {
		s.seenLocal = map[string]bool{}
	}
	for _, l := range local {
		isLocal[l.Manifest.ID] = true
		s.seenLocal[l.Manifest.ID] = true
		if have[l.Manifest.ID] {
			continue
		}
		t0 := time.Now()
		n, err := ShipSnapshot(ctx, s.Store, s.Source, s.Writer, l, s.Check)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed by retention meanwhile
			}
			return fmt.Errorf("snapshot %s: %w", l.Manifest.ID, err)
		}
		s.mu.Lock()
		s.status.Uploaded += n
		s.mu.Unlock()
		s.Log.Info("snapshot shipped to the store", "source", s.Source, "snapshot", l.Manifest.ID, "bytes", n, "took", time.Since(t0).Round(time.Millisecond))
	}
	// Retention's removals are done in the store too (snapshot.Remove
	// leaves a marker); a snapshot that merely disappeared from the local
	// directory (removed by hand to free the disk) stays in the store.
	removed, err := snapshot.Removed(s.SnapshotRoot)
	if err != nil {
		return err
	}
	deleted := map[string]bool{}
	for _, r := range remote {
		if isLocal[r.ID] {
			continue
		}
		if _, ok := removed[r.ID]; ok {
			if err := deleteSnapshot(ctx, s.Store.Plain, s.Source, r.ID); err != nil {
				return err
			}
			deleted[r.ID] = true
			s.Log.Info("snapshot removed from the store, as retention removed it locally", "source", s.Source, "snapshot", r.ID)
			continue
		}
		if s.seenLocal[r.ID] && !s.keptGone[r.ID] {
			if s.keptGone == nil {
				s.keptGone = map[string]bool{}
			}
			s.keptGone[r.ID] = true
			s.Log.Warn("a snapshot disappeared from the local directory without retention; the store keeps it", "source", s.Source, "snapshot", r.ID)
		}
	}
	// A marker is done with once the store does not hold its snapshot
	// (deleted above, or never shipped). One whose snapshot was still
	// listed locally at the start of this pass waits for the next.
	for id := range removed {
		if have[id] && !deleted[id] {
			continue // still in the store: the next pass deletes it
		}
		if err := snapshot.ForgetRemoved(s.SnapshotRoot, id); err != nil {
			return err
		}
	}
	// Uploads that never reached their commit point.
	partial := map[string]bool{}
	err = s.Store.Plain.List(ctx, SnapshotPrefix(s.Source), func(i storage.Info) error {
		id, _, _ := strings.Cut(strings.TrimPrefix(i.Name, SnapshotPrefix(s.Source)), "/")
		if !have[id] && !isLocal[id] {
			partial[id] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	for id := range partial {
		if err := deleteSnapshot(ctx, s.Store.Plain, s.Source, id); err != nil {
			return err
		}
	}
	return nil
}
