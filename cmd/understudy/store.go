package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/remote"
	"github.com/understudy-db/understudy/snapshot"
	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/s3"
)

// openStore opens the config's store (storage.s3) with its keys: nil
// without one.
func openStore(cfg *config.Config, log *slog.Logger) (*remote.Store, *storage.Settings, error) {
	st, err := cfg.ResolveStorage()
	if err != nil || st == nil {
		return nil, nil, err
	}
	b, err := s3.Open(st, log)
	if err != nil {
		return nil, nil, err
	}
	keys, err := st.Keys()
	if err != nil {
		return nil, nil, err
	}
	rs := &remote.Store{Plain: b}
	if keys != nil {
		rs.Enc = storage.NewEncrypted(b, keys)
	}
	return rs, st, nil
}

// hasLocalArchive tells whether dir holds an archive: a manifest or an
// archived file.
func hasLocalArchive(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, archive.ManifestName)); err == nil {
		return true
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if _, ok := archive.FileNumber(e.Name()); ok {
			return true
		}
	}
	return false
}

// sourceDirs is where a reading command reads a source from.
type sourceDirs struct {
	dir, snapRoot string
	// With the store: read from it (the local archive directory holds
	// nothing), or a local archive with evicted files (local_keep) that
	// are fetched from it into dir as needed.
	store    *remote.Store
	view     *remote.View
	snaps    []remote.RemoteSnapshot
	name     string
	readFrom bool
	storeErr error // why the store could not be opened
}

// fromStore tells whether the source is read from the store.
func (d *sourceDirs) fromStore() bool { return d.readFrom }

// missing returns the evicted files among files that dir lacks.
func missing(dir string, files []archive.FileInfo) []string {
	var out []string
	for _, f := range files {
		if !f.Evicted {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, f.Name)); os.IsNotExist(err) {
			out = append(out, f.Name)
		}
	}
	return out
}

// fetchEvicted brings the evicted files among files back from the store
// into the local archive directory (a cache: run evicts them again).
func (d *sourceDirs) fetchEvicted(ctx context.Context, files []archive.FileInfo) error {
	names := missing(d.dir, files)
	if len(names) == 0 {
		return nil
	}
	if d.store == nil {
		why := "the config has no storage.s3 block"
		if d.storeErr != nil {
			why = "the store cannot be opened: " + d.storeErr.Error()
		}
		return fmt.Errorf("source %s: %s and %d more files are held only in the store (storage.local_keep), and %s", d.name, names[0], len(names)-1, why)
	}
	if d.view == nil {
		v, err := remote.OpenView(ctx, *d.store, d.name)
		if err != nil {
			return fmt.Errorf("source %s in the store: %w", d.name, err)
		}
		d.view = v
	}
	if err := d.view.Fetch(ctx, d.dir, names); err != nil {
		return fmt.Errorf("source %s: fetching %d files held only in the store: %w", d.name, len(names), err)
	}
	return nil
}

// storeCacheDir is where a source read from the store is brought: a
// directory laid out as an archive, beside the sources' own.
func storeCacheDir(cfg *config.Config, name string) string {
	return filepath.Join(filepath.Dir(cfg.SourceDir(name)), ".store", name)
}

// readDirs returns the directories that a reading command (restore,
// serve, binlog export, events, snapshots, info, verify) reads the source
// name from: its archive directory when that holds an archive; else, when
// the config has a store, a local copy of the store's archive of the
// source (storeCacheDir), brought up to date: its manifest, active file and
// snapshot manifests, and with all every sealed file too (else fetch them
// as needed: fetchFiles, fetchSnapshot). Reading from an encrypted store
// needs storage.encryption.identity_file.
func readDirs(ctx context.Context, cfg *config.Config, name string, all bool, log *slog.Logger) (*sourceDirs, error) {
	d := &sourceDirs{dir: cfg.SourceDir(name), snapRoot: cfg.SnapshotDir(name), name: name}
	if cfg.Storage == nil {
		return d, nil
	}
	st, _, err := openStore(cfg, log)
	if hasLocalArchive(d.dir) {
		// The local archive is read; the store only for the files it
		// holds alone, and a store that cannot be opened is an error only
		// then.
		d.store, d.storeErr = st, err
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	v, err := remote.OpenView(ctx, *st, name)
	if err != nil {
		return nil, fmt.Errorf("source %s in the store: %w", name, err)
	}
	snaps, err := remote.ListSnapshots(ctx, *st, name)
	if err != nil {
		return nil, fmt.Errorf("snapshots of source %s in the store: %w", name, err)
	}
	if v.Empty() && len(snaps) == 0 {
		return nil, fmt.Errorf("source %s: the archive directory %s is empty, and the store holds nothing of it either", name, d.dir)
	}
	d.store, d.view, d.snaps, d.readFrom = st, v, snaps, true
	d.dir = storeCacheDir(cfg, name)
	d.snapRoot = filepath.Join(d.dir, "snapshots")
	var want func(archive.FileInfo) bool
	if !all {
		want = func(archive.FileInfo) bool { return false }
	}
	log.Info("the archive directory is empty: reading the source from the store", "source", name, "position", v.Position().String(), "snapshots", len(snaps), "into", d.dir)
	if err := v.Materialize(ctx, d.dir, want); err != nil {
		return nil, fmt.Errorf("source %s from the store: %w", name, err)
	}
	if err := remote.MaterializeSnapshots(ctx, *st, name, d.snapRoot, snaps); err != nil {
		return nil, fmt.Errorf("snapshots of source %s from the store: %w", name, err)
	}
	return d, nil
}

// fetch brings the snapshot in snapDir and the archived files given from
// the store, when the source is read from it (restore.Options.Fetch).
func (d *sourceDirs) fetch(ctx context.Context, snapDir string, files []archive.FileInfo) error {
	if !d.fromStore() || snapDir == "" {
		return d.fetchEvicted(ctx, files)
	}
	id := filepath.Base(snapDir)
	var snap *remote.RemoteSnapshot
	for i := range d.snaps {
		if d.snaps[i].ID == id {
			snap = &d.snaps[i]
		}
	}
	if snap == nil {
		return fmt.Errorf("snapshot %s of source %s is not in the store", id, d.name)
	}
	// The snapshot and the binlogs at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := remote.FetchSnapshot(ctx, *d.store, d.name, snapDir, *snap)
		if err != nil {
			cancel()
			err = fmt.Errorf("snapshot %s of source %s from the store: %w", id, d.name, err)
		}
		done <- err
	}()
	err := d.fetchEvicted(ctx, files)
	if err != nil {
		cancel()
	}
	// The first failure, not the other's cancellation.
	if serr := <-done; serr != nil && (err == nil || !errors.Is(serr, context.Canceled)) {
		return serr
	}
	return err
}

// fetchAllEvicted brings back every file of a local archive that is held
// only in the store (storage.local_keep), for the commands that read them
// all (serve, binlog export, events). It does nothing for an archive read
// from the store (readDirs with all brought everything).
func (d *sourceDirs) fetchAllEvicted(ctx context.Context) error {
	if d.fromStore() {
		return nil
	}
	a, err := archive.Open(d.dir)
	if err != nil {
		return nil // the command reports it
	}
	return d.fetchEvicted(ctx, a.Files())
}

// fetchAllSnapshots brings every snapshot's files from the store.
func (d *sourceDirs) fetchAllSnapshots(ctx context.Context) error {
	if !d.fromStore() {
		return nil
	}
	list, err := snapshot.List(d.snapRoot)
	if err != nil {
		return err
	}
	for _, l := range list {
		if err := d.fetch(ctx, l.Dir, nil); err != nil {
			return err
		}
	}
	return nil
}

var errNoStore = errors.New("the config has no storage.s3 block")
