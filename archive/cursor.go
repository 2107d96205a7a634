package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

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

	// What the index told so far: where the last transaction ends, how
	// many there were, and the data's size as last seen.
	prevEnd uint32
	count   int64
	size    int64
	// complete is set once a sealed file's end was checked.
	complete bool
	damage   error
	failed   error // a fill that failed: returned once pending is empty
	// manifest is the sealed files as the manifest listed them when last
	// read (it is read again when it does not list a sealed file yet).
	manifest []FileInfo
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
	f, err := HoldFile(path)
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
	st, err := f.Stat()
	if err != nil {
		f.Close()
		if idx != nil {
			idx.Close()
		}
		return err
	}
	c.Close()
	c.num, c.f, c.idx, c.hdr, c.idxOff, c.pending = n, f, idx, h, 0, nil
	c.prevEnd, c.count, c.size, c.complete = uint32(h.end), 0, st.Size(), false
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
// ok=false when there is none yet. An error wrapping understudy.ErrCorrupt
// means the archive does not hold the next transaction whole: the reader
// must stop, not skip it.
func (c *Cursor) Next() (rec Record, ok bool, err error) {
	if len(c.pending) == 0 {
		if c.failed != nil {
			return Record{}, false, c.failed
		}
		if err := c.fill(); err != nil {
			// The good records read before the damage go out first;
			// the error comes once they are taken.
			c.failed = err
			if len(c.pending) == 0 {
				return Record{}, false, err
			}
		} else if len(c.pending) == 0 {
			return Record{}, false, nil
		}
	}
	rec = c.pending[0]
	c.pending = c.pending[1:]
	return rec, true, nil
}

// IndexDamage returns the first damage the cursor found in an index and
// worked around by reading the records from the data (nil if none). It
// wraps understudy.ErrCorrupt; `understudy verify` reports it too.
func (c *Cursor) IndexDamage() error { return c.damage }

// fill reads new index records. Once the file is sealed (a newer file
// exists) and its index is read, it checks the file's end (see checkEnd).
func (c *Cursor) fill() error {
	if err := c.readIndex(); err != nil || len(c.pending) > 0 || c.complete {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.dir, FileName(c.num+1))); err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	// The next file exists, so this one is sealed: read what is left.
	if err := c.readIndex(); err != nil || len(c.pending) > 0 {
		return err
	}
	return c.checkEnd()
}

func (c *Cursor) corrupt(format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", filepath.Join(c.dir, c.Name()), understudy.ErrCorrupt, fmt.Sprintf(format, args...))
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
	want := cap(c.buf) / RecordSize * RecordSize
	n, err := c.idx.ReadAt(c.buf[:want], c.idxOff)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	atEnd := n < want
	n -= n % RecordSize
	for i := 0; i < n; {
		r, ok := parseRecord(c.buf[i : i+RecordSize])
		// The hot path: a valid record that follows the previous one
		// within the data seen so far.
		if ok && r.Start == c.prevEnd && r.End > r.Start && int64(r.End) <= c.size {
			c.accept(r)
			i += RecordSize
			continue
		}
		recs, err := c.repair(c.buf[i:n], atEnd)
		if err != nil {
			return err
		}
		for _, r := range recs {
			c.accept(r)
		}
		i += len(recs) * RecordSize
	}
	return nil
}

func (c *Cursor) accept(r Record) {
	c.pending = append(c.pending, r)
	c.idxOff += RecordSize
	c.prevEnd = r.End
	c.count++
}

// repair is the slow path of readIndex, for the first of the index records
// in slots (read at c.idxOff), which is not valid or does not simply
// follow the previous one; it returns the records to use for the first of
// slots, or more. A record whose transaction starts after events that
// belong to no transaction is used as it is. A damaged record (or, at the
// end of the index, one caught while it is written: it is read once more)
// is rebuilt from the data: its transaction is durable, since a record is
// written only after its data was synced. A valid record that does not
// fit the data is corruption.
func (c *Cursor) repair(slots []byte, atEnd bool) ([]Record, error) {
	slot := c.idxOff / RecordSize
	st, err := c.f.Stat()
	if err != nil {
		return nil, err
	}
	c.size = st.Size()
	fits := func(r Record) bool {
		return r.End > r.Start && int64(r.End) <= c.size &&
			(r.Start == c.prevEnd || onlyLoose(c.f, int64(c.prevEnd), int64(r.Start), c.hdr.checksum))
	}
	r, ok := parseRecord(slots)
	if ok {
		if fits(r) {
			return []Record{r}, nil
		}
		return nil, c.corrupt("index record %d (index offset %d): %s at offsets %d to %d does not follow the data (the previous transaction ends at %d, the file has %d bytes)",
			slot, c.idxOff, r.GTID, r.Start, r.End, c.prevEnd, c.size)
	}
	if atEnd && len(slots) == RecordSize {
		time.Sleep(time.Millisecond)
		var b [RecordSize]byte
		if _, err := c.idx.ReadAt(b[:], c.idxOff); err == nil {
			if r, ok := parseRecord(b[:]); ok && fits(r) {
				return []Record{r}, nil
			}
		}
	}
	res := scanRange(c.f, int64(c.prevEnd), c.size, c.hdr.checksum, len(slots)/RecordSize)
	if len(res.records) == 0 {
		reason := res.torn
		if reason == nil {
			reason = errors.New("end of the file")
		}
		return nil, c.corrupt("index record %d (index offset %d) is damaged, and the data holds no whole transaction after offset %d: %v", slot, c.idxOff, res.end, reason)
	}
	for j, rb := range res.records {
		if r, ok := parseRecord(slots[j*RecordSize:]); ok && r != rb {
			return nil, c.corrupt("index record %d (%s at offset %d) does not match the data (%s at offset %d)", slot+int64(j), r.GTID, r.Start, rb.GTID, rb.Start)
		}
	}
	if c.damage == nil {
		c.damage = fmt.Errorf("%s%s: %w: record %d (offset %d) is damaged; read from the data instead", filepath.Join(c.dir, c.Name()), indexSuffix, understudy.ErrCorrupt, slot, c.idxOff)
	}
	return res.records, nil
}

// checkEnd checks a sealed file once its index is read: the data after the
// last record must hold no transaction (a short index is completed from
// the data), and the manifest, once it lists the file, must agree on its
// size and number of transactions.
func (c *Cursor) checkEnd() error {
	st, err := c.f.Stat()
	if err != nil {
		return err
	}
	c.size = st.Size()
	if int64(c.prevEnd) < c.size {
		res := scanRange(c.f, int64(c.prevEnd), c.size, c.hdr.checksum, 0)
		if res.torn != nil {
			return c.corrupt("unreadable from offset %d: %v", res.end, res.torn)
		}
		if len(res.records) > 0 {
			if c.damage == nil {
				c.damage = fmt.Errorf("%s%s: %w: it ends after %d transactions; %d more read from the data", filepath.Join(c.dir, c.Name()), indexSuffix, understudy.ErrCorrupt, c.count, len(res.records))
			}
			c.pending = append(c.pending, res.records...)
			c.prevEnd = res.records[len(res.records)-1].End
			c.count += int64(len(res.records))
			return nil
		}
	}
	fi, ok := c.sealedInfo()
	if !ok {
		// Sealed moments ago: the manifest does not list it yet.
		m, err := readManifest(c.dir)
		if err != nil {
			return err
		}
		c.manifest = m.Files
		fi, ok = c.sealedInfo()
	}
	if ok && (fi.Size != c.size || fi.Transactions != c.count) {
		return c.corrupt("%d bytes and %d transactions, the manifest says %d bytes and %d transactions", c.size, c.count, fi.Size, fi.Transactions)
	}
	c.complete = true
	return nil
}

// sealedInfo looks the current file up in the sealed files of the manifest
// as last read.
func (c *Cursor) sealedInfo() (FileInfo, bool) {
	files := c.manifest
	i := sort.Search(len(files), func(i int) bool {
		n, _ := fileNumber(files[i].Name)
		return n >= c.num
	})
	if i < len(files) && files[i].Name == c.Name() {
		return files[i], true
	}
	return FileInfo{}, false
}

// Advance moves to the next file once the current one is complete: the
// writer has started a newer file, every transaction of this one was
// returned, and its end was checked. It reports whether it moved.
func (c *Cursor) Advance() (bool, error) {
	if len(c.pending) > 0 {
		return false, nil
	}
	if !c.complete {
		if err := c.fill(); err != nil || len(c.pending) > 0 || !c.complete {
			return false, err
		}
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
