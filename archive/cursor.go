package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// Cursor follows a source's archive file by file and transaction by
// transaction, seeing new durable transactions as the writer adds them. It
// reads each index only once, from where it left off. A binlog server
// tails the archive with it.
type Cursor struct {
	dir string
	num int
	f   *os.File
	idx *os.File
	hdr header
	ev  *binlog.Reader

	idxOff  int64
	pending []Record
	buf     []byte
}

// OpenCursor opens the archived file name at its first transaction.
func OpenCursor(dir, name string) (*Cursor, error) {
	n, ok := fileNumber(name)
	if !ok {
		return nil, fmt.Errorf("%q is not an archived file name", name)
	}
	c := &Cursor{dir: dir}
	if err := c.open(n); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cursor) open(n int) error {
	path := filepath.Join(c.dir, FileName(n))
	// The shared lock keeps retention from removing this file and the
	// ones after it while the cursor reads; the previous file is released
	// only once this one is held.
	f, err := holdFile(path)
	if err != nil {
		return err
	}
	h, err := readHeader(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	idx, err := os.Open(path + indexSuffix)
	if err != nil && !os.IsNotExist(err) {
		f.Close()
		return err
	}
	c.Close()
	c.num, c.f, c.idx, c.hdr, c.idxOff, c.pending = n, f, idx, h, 0, nil
	if c.ev == nil {
		c.ev = binlog.NewReaderAt(f, h.end, h.checksum)
	}
	return nil
}

// Name is the current file's name.
func (c *Cursor) Name() string { return FileName(c.num) }

// FormatDescription is the current file's format description event.
func (c *Cursor) FormatDescription() []byte { return c.hdr.fde }

// Start is the archive position before the current file.
func (c *Cursor) Start() understudy.Position { return c.hdr.start }

// Checksum reports whether the current file's events carry a CRC32.
func (c *Cursor) Checksum() bool { return c.hdr.checksum }

// DataStart is the offset of the current file's first transaction.
func (c *Cursor) DataStart() int64 { return c.hdr.end }

// Next returns the next durable transaction of the current file, or
// ok=false when there is none yet.
func (c *Cursor) Next() (rec Record, ok bool, err error) {
	if len(c.pending) == 0 {
		if err := c.readIndex(); err != nil {
			return Record{}, false, err
		}
		if len(c.pending) == 0 {
			return Record{}, false, nil
		}
	}
	rec = c.pending[0]
	c.pending = c.pending[1:]
	return rec, true, nil
}

func (c *Cursor) readIndex() error {
	if c.idx == nil {
		idx, err := os.Open(filepath.Join(c.dir, FileName(c.num)) + indexSuffix)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		c.idx = idx
	}
	if cap(c.buf) < 64<<10 {
		c.buf = make([]byte, 64<<10)
	}
	n, err := c.idx.ReadAt(c.buf[:cap(c.buf)/RecordSize*RecordSize], c.idxOff)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	n -= n % RecordSize
	for i := 0; i < n; i += RecordSize {
		r, ok := parseRecord(c.buf[i : i+RecordSize])
		if !ok {
			break // a record being written: read it next time
		}
		c.pending = append(c.pending, r)
		c.idxOff += RecordSize
	}
	return nil
}

// Advance moves to the next file once the current one is complete: the
// writer has started a newer file and every transaction of this one was
// returned. It reports whether it moved.
func (c *Cursor) Advance() (bool, error) {
	if len(c.pending) > 0 {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(c.dir, FileName(c.num+1))); err != nil {
		if os.IsNotExist(err) {
			return false, nil
		}
		return false, err
	}
	// The next file exists, so this one is sealed: read what is left.
	if err := c.readIndex(); err != nil || len(c.pending) > 0 {
		return false, err
	}
	return true, c.open(c.num + 1)
}

// Events returns a reader of the events of rec. It is valid until the next
// call.
func (c *Cursor) Events(rec Record) *binlog.Reader {
	c.ev.Reset(io.NewSectionReader(c.f, int64(rec.Start), int64(rec.End-rec.Start)), int64(rec.Start), c.hdr.checksum)
	return c.ev
}

// Close closes the current file.
func (c *Cursor) Close() error {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	if c.idx != nil {
		c.idx.Close()
		c.idx = nil
	}
	return nil
}
