// Package local is the storage backend of a local directory: each object
// is a file under the root, its name the file's path relative to the root.
//
// Writes are crash-safe: the data goes to a temporary file in the object's
// directory (".tmp-*"), which is fsynced, then renamed (Put, ReplaceIf) or
// hard-linked (PutIfAbsent: link(2) fails if the name exists) onto the
// object's path, and the directory is fsynced. The commit step (the check
// of PutIfAbsent or ReplaceIf and the rename or link) holds an exclusive
// flock(2) on the root's ".lock" file, so conditional writes are atomic
// across goroutines and processes. Files are created with mode 0600 and
// directories 0700.
//
// An ETag is the file's inode, modification time (ns) and size. Each
// replacement of an object gets a modification time later than the one it
// replaces, so a version's ETag is never taken by a later version.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-db/understudy/storage"
)

// Backend is a directory used as a store.
type Backend struct {
	root string
}

var _ storage.Backend = (*Backend)(nil)

// tmpPrefix begins the names of temporary files; lockName is the commit
// lock. Object names never begin with a dot (storage.ValidName).
const (
	tmpPrefix = ".tmp-"
	lockName  = ".lock"
)

// StaleTemp is the age after which Open removes temporary files that a
// crashed writer left behind.
const StaleTemp = 24 * time.Hour

// Open opens (and creates, mode 0700) the directory root as a store, and
// removes temporary files older than StaleTemp.
func Open(root string) (*Backend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := mkdirAll(abs); err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	f, err := os.OpenFile(filepath.Join(abs, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	f.Close()
	b := &Backend{root: abs}
	b.removeStale(time.Now().Add(-StaleTemp))
	return b, nil
}

// Root returns the store's directory.
func (b *Backend) Root() string { return b.root }

// Path returns the file of an object.
func (b *Backend) Path(name string) string {
	return filepath.Join(b.root, filepath.FromSlash(name))
}

func (b *Backend) fail(op, name string, err error) error {
	return &storage.Error{Op: op, Where: b.Path(name), Err: err}
}

// Put implements storage.Backend.
func (b *Backend) Put(ctx context.Context, name string, r io.ReaderAt, size int64) (storage.Info, error) {
	return b.write(ctx, "put", name, r, size, func(tmp, path string) error {
		if err := laterModTime(tmp, path); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	})
}

// PutIfAbsent implements storage.Backend with link(2), which fails when
// the name exists.
func (b *Backend) PutIfAbsent(ctx context.Context, name string, r io.ReaderAt, size int64) (storage.Info, error) {
	return b.write(ctx, "put-if-absent", name, r, size, func(tmp, path string) error {
		if err := os.Link(tmp, path); err != nil {
			if fi, serr := os.Lstat(path); errors.Is(err, fs.ErrExist) && serr == nil && !fi.IsDir() {
				return storage.ErrExists
			}
			return err
		}
		return os.Remove(tmp)
	})
}

// ReplaceIf implements storage.Backend.
func (b *Backend) ReplaceIf(ctx context.Context, name string, r io.ReaderAt, size int64, etag string) (storage.Info, error) {
	// Not worth writing the data if the object is not there (checked
	// again under the lock).
	if _, err := b.Stat(ctx, name); err != nil {
		var e *storage.Error
		if errors.As(err, &e) {
			e.Op = "replace-if"
		}
		return storage.Info{}, err
	}
	return b.write(ctx, "replace-if", name, r, size, func(tmp, path string) error {
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) || err == nil && !fi.Mode().IsRegular():
			return storage.ErrNotExist
		case err != nil:
			return err
		case etagOf(fi) != etag:
			return storage.ErrPrecondition
		}
		if err := laterModTime(tmp, path); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	})
}

// write writes a temporary file in the object's directory, fsyncs it,
// runs commit under the store's lock, and fsyncs the directory.
func (b *Backend) write(ctx context.Context, op, name string, r io.ReaderAt, size int64, commit func(tmp, path string) error) (storage.Info, error) {
	if err := storage.ValidName(name); err != nil {
		return storage.Info{}, b.fail(op, name, err)
	}
	if size < 0 {
		return storage.Info{}, b.fail(op, name, fmt.Errorf("negative size %d", size))
	}
	path := b.Path(name)
	dir := filepath.Dir(path)
	if err := mkdirAll(dir); err != nil {
		return storage.Info{}, b.fail(op, name, err)
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return storage.Info{}, b.fail(op, name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a commit, a no-op (or the link's leftover)
	if err := copyData(ctx, f, r, size); err != nil {
		f.Close()
		return storage.Info{}, b.fail(op, name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return storage.Info{}, b.fail(op, name, err)
	}
	if err := f.Close(); err != nil {
		return storage.Info{}, b.fail(op, name, err)
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, b.fail(op, name, err)
	}
	var fi os.FileInfo
	err = b.locked(func() error {
		if err := commit(tmp, path); err != nil {
			return err
		}
		fi, err = os.Stat(path)
		return err
	})
	if err != nil {
		if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTDIR) {
			err = fmt.Errorf("%w (a name cannot be both an object and a prefix of other objects' directories in a local store)", err)
		}
		return storage.Info{}, b.fail(op, name, err)
	}
	if err := syncDir(dir); err != nil {
		return storage.Info{}, b.fail(op, name, err)
	}
	return b.info(name, fi), nil
}

// copyData copies size bytes of r into f, checking ctx between blocks.
func copyData(ctx context.Context, f *os.File, r io.ReaderAt, size int64) error {
	r = storage.DataReader(r, size)
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int(min(int64(len(buf)), size-off))
		if m, err := r.ReadAt(buf[:n], off); m < n {
			return err
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// laterModTime gives the new file tmp a modification time later than that
// of the file it replaces, so that the two ETags differ even when the
// inode is reused and the clock has not ticked.
func laterModTime(tmp, path string) error {
	old, err := os.Stat(path)
	if err != nil {
		return nil // nothing replaced
	}
	nfi, err := os.Stat(tmp)
	if err != nil {
		return err
	}
	for step := time.Microsecond; !nfi.ModTime().After(old.ModTime()); step *= 1000 {
		if step > time.Hour {
			return fmt.Errorf("cannot give %s a modification time after %s", tmp, old.ModTime())
		}
		t := old.ModTime().Add(step)
		if err := os.Chtimes(tmp, t, t); err != nil {
			return err
		}
		if nfi, err = os.Stat(tmp); err != nil {
			return err
		}
	}
	return nil
}

// locked runs fn holding the store's commit lock: an exclusive flock(2) on
// the root's lock file, opened for this call so that goroutines of one
// process exclude each other as processes do.
func (b *Backend) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(b.root, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

// Get implements storage.Backend.
func (b *Backend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := storage.ValidName(name); err != nil {
		return nil, b.fail("get", name, err)
	}
	if off < 0 {
		return nil, b.fail("get", name, fmt.Errorf("%w: negative offset %d", storage.ErrRange, off))
	}
	f, err := os.Open(b.Path(name))
	if err != nil {
		return nil, b.fail("get", name, fileErr(err))
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = storage.ErrNotExist
	}
	if err == nil && off > fi.Size() {
		err = fmt.Errorf("%w: offset %d, size %d", storage.ErrRange, off, fi.Size())
	}
	if err != nil {
		f.Close()
		return nil, b.fail("get", name, err)
	}
	n := fi.Size() - off
	if length >= 0 && length < n {
		n = length
	}
	return &fileReader{SectionReader: io.NewSectionReader(f, off, n), f: f}, nil
}

type fileReader struct {
	*io.SectionReader
	f *os.File
}

func (r *fileReader) Close() error { return r.f.Close() }

// Stat implements storage.Backend.
func (b *Backend) Stat(ctx context.Context, name string) (storage.Info, error) {
	if err := storage.ValidName(name); err != nil {
		return storage.Info{}, b.fail("stat", name, err)
	}
	fi, err := os.Stat(b.Path(name))
	if err == nil && !fi.Mode().IsRegular() {
		err = storage.ErrNotExist
	}
	if err != nil {
		return storage.Info{}, b.fail("stat", name, fileErr(err))
	}
	return b.info(name, fi), nil
}

// List implements storage.Backend: it walks the directory that the prefix
// lies in (only the subdirectories that can hold a match), then calls fn
// in the order of the names.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if err := storage.ValidPrefix(prefix); err != nil {
		return b.fail("list", prefix, err)
	}
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
	}
	var found []storage.Info
	start := filepath.Join(b.root, filepath.FromSlash(base))
	err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if path == start {
			if !d.IsDir() {
				return fs.SkipAll
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(b.root, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			// Descend only where names can begin with the prefix.
			if strings.HasPrefix(name+"/", prefix) || strings.HasPrefix(prefix, name+"/") {
				return nil
			}
			return fs.SkipDir
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		found = append(found, b.info(name, fi))
		return nil
	})
	if err != nil {
		return b.fail("list", prefix, err)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Name < found[j].Name })
	for _, info := range found {
		if err := ctx.Err(); err != nil {
			return b.fail("list", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements storage.Backend.
func (b *Backend) Delete(ctx context.Context, name string) error {
	if err := storage.ValidName(name); err != nil {
		return b.fail("delete", name, err)
	}
	path := b.Path(name)
	err := b.locked(func() error {
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) || err == nil && fi.IsDir() {
			return fs.ErrNotExist
		}
		if err != nil {
			return err
		}
		return os.Remove(path)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return b.fail("delete", name, err)
	}
	return nil
}

func (b *Backend) info(name string, fi os.FileInfo) storage.Info {
	return storage.Info{Name: name, Size: fi.Size(), ETag: etagOf(fi), ModTime: fi.ModTime()}
}

// etagOf is a file's inode, modification time in ns and size, in hex.
func etagOf(fi os.FileInfo) string {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%x-%x-%x", ino, fi.ModTime().UnixNano(), fi.Size())
}

// fileErr maps a missing file (or a path through a file) to ErrNotExist.
func fileErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w (%v)", storage.ErrNotExist, err)
	}
	return err
}

// mkdirAll creates dir and its missing parents with mode 0700, and fsyncs
// the parent of each directory it creates, so that the new entries are
// durable before a file in them is.
func mkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// removeStale removes temporary files last written before cutoff.
func (b *Backend) removeStale(cutoff time.Time) {
	filepath.WalkDir(b.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			os.Remove(path)
		}
		return nil
	})
}

// Where implements storage.Locator: the object's file.
func (b *Backend) Where(name string) string { return b.Path(name) }
