package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"

	"github.com/understudy-db/understudy"
)

// RecordSize is the size of one index record.
const RecordSize = 32

// Record is one transaction in a file's index: where its events are and
// which GTID and commit time it has.
type Record struct {
	Start uint32 // offset of its GTID event
	End   uint32 // offset just after its last event
	GTID  understudy.GTID
	Time  uint32 // commit time, unix seconds (timestamp of its last event)
}

func (r Record) put(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], r.Start)
	binary.LittleEndian.PutUint32(b[4:], r.End)
	binary.LittleEndian.PutUint32(b[8:], r.GTID.Domain)
	binary.LittleEndian.PutUint32(b[12:], r.GTID.ServerID)
	binary.LittleEndian.PutUint64(b[16:], r.GTID.Seq)
	binary.LittleEndian.PutUint32(b[24:], r.Time)
	binary.LittleEndian.PutUint32(b[28:], crc32.ChecksumIEEE(b[:28]))
}

func parseRecord(b []byte) (Record, bool) {
	if crc32.ChecksumIEEE(b[:28]) != binary.LittleEndian.Uint32(b[28:]) {
		return Record{}, false
	}
	return Record{
		Start: binary.LittleEndian.Uint32(b[0:]),
		End:   binary.LittleEndian.Uint32(b[4:]),
		GTID: understudy.GTID{
			Domain:   binary.LittleEndian.Uint32(b[8:]),
			ServerID: binary.LittleEndian.Uint32(b[12:]),
			Seq:      binary.LittleEndian.Uint64(b[16:]),
		},
		Time: binary.LittleEndian.Uint32(b[24:]),
	}, true
}

// parseIndex decodes index records and stops at the first torn or invalid
// one; records must be in file order and end within size.
func parseIndex(b []byte, size int64) []Record {
	var out []Record
	var prevEnd uint32
	for len(b) >= RecordSize {
		r, ok := parseRecord(b[:RecordSize])
		if !ok || r.Start < prevEnd || r.End <= r.Start || int64(r.End) > size {
			break
		}
		out = append(out, r)
		prevEnd = r.End
		b = b[RecordSize:]
	}
	return out
}

// loadIndex returns the transactions of the archived file fi in dir. The
// index is used as it is only when every record is whole and valid, starts
// where the previous transaction ended (or after events that belong to no
// transaction), ends within the data and, for a sealed file, when the
// records are as many as the manifest says and end where the file ends.
// Otherwise the records are rebuilt from the binlog file, whose events
// carry CRC32s, and damage says what was wrong with the index.
//
// For the active file (fi not sealed), every whole index record is a
// durable transaction, since a record is written only after its data was
// synced; a partial record at the end is being written. Its records are
// those that end within limit (limit 0: all).
//
// err, which wraps understudy.ErrCorrupt and names the file and offset,
// means the data does not hold the transactions either: a reader must
// stop there, never skip them.
func loadIndex(dir string, fi FileInfo, limit int64) (recs []Record, damage, err error) {
	path := filepath.Join(dir, fi.Name)
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", path, understudy.ErrCorrupt, fmt.Sprintf(format, args...))
	}
	// The index first, then the data's size: the writer appends records
	// only after their data, so the data holds every record read.
	var size int64
	readBoth := func() ([]byte, error) {
		b, err := os.ReadFile(path + indexSuffix)
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		st, serr := f.Stat()
		if serr != nil {
			return nil, serr
		}
		size = st.Size()
		return b, err
	}
	b, err := readBoth()
	missing := os.IsNotExist(err)
	if err != nil && !missing {
		return nil, nil, err
	}
	if fi.Sealed {
		limit = 0
		if size != fi.Size {
			return nil, nil, corrupt("the file has %d bytes, the manifest says %d", size, fi.Size)
		}
	}
	if missing && size > h.end {
		damage = fmt.Errorf("%s%s: %w: missing", path, indexSuffix, understudy.ErrCorrupt)
	}
	for try := 0; damage == nil; try++ {
		var bad int
		recs, bad, damage = checkIndex(f, h, b, size, fi, limit)
		if damage != nil {
			damage = fmt.Errorf("%s%s: %w: %v", path, indexSuffix, understudy.ErrCorrupt, damage)
		}
		// The last record of the active file's index may be read while
		// it is written: look once more.
		if damage == nil || fi.Sealed || try > 0 || bad != len(b)/RecordSize-1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
		if b, err = readBoth(); err != nil {
			return nil, nil, err
		}
		damage = nil
	}
	if damage == nil {
		return recs, nil, nil
	}

	// Rebuild the records from the data.
	slots := len(b) / RecordSize
	if fi.Sealed {
		res := scanRange(f, h.end, size, h.checksum, 0)
		if res.torn != nil {
			return nil, damage, corrupt("unreadable from offset %d: %v (and the index is damaged: %v)", res.end, res.torn, damage)
		}
		if int64(len(res.records)) != fi.Transactions {
			return nil, damage, corrupt("%d transactions in the data, the manifest says %d (and the index is damaged: %v)", len(res.records), fi.Transactions, damage)
		}
		if n := len(res.records); n > 0 {
			last := res.records[n-1].GTID
			if g, ok := fi.EndPosition.Domain(last.Domain); !ok || g != last {
				return nil, damage, corrupt("the last transaction in the data is %s, the manifest ends at %q", last, fi.EndPosition.String())
			}
		}
		recs = res.records
	} else {
		// Without an index, what the data holds whole is taken as
		// durable, as recovery does.
		res := scanRange(f, h.end, size, h.checksum, slots)
		if !missing && len(res.records) < slots {
			reason := res.torn
			if reason == nil {
				reason = errors.New("end of the file")
			}
			return nil, damage, corrupt("the index holds %d durable transactions, the data only %d whole ones, up to offset %d: %v (and the index is damaged: %v)", slots, len(res.records), res.end, reason, damage)
		}
		recs = res.records
	}
	// What the index holds intact must agree with the data.
	for i := 0; i < slots && i < len(recs); i++ {
		if r, ok := parseRecord(b[i*RecordSize:]); ok && r != recs[i] {
			return nil, damage, corrupt("index record %d (%s at offset %d) does not match the data (%s at offset %d)", i, r.GTID, r.Start, recs[i].GTID, recs[i].Start)
		}
	}
	for limit > 0 && len(recs) > 0 && int64(recs[len(recs)-1].End) > limit {
		recs = recs[:len(recs)-1]
	}
	return recs, damage, nil
}

// checkIndex decodes the index b of a binlog file (open as f, with header
// h and size bytes) and checks it as loadIndex describes, cheaply: the data
// is read only where a record does not start where the previous one ended.
// It returns the records and, if the index cannot be used, why, and the
// number of the first bad record (-1 when the index is bad as a whole).
func checkIndex(f *os.File, h header, b []byte, size int64, fi FileInfo, limit int64) ([]Record, int, error) {
	slots := len(b) / RecordSize
	recs := make([]Record, 0, slots)
	prevEnd := uint32(h.end)
	for i := 0; i < slots; i++ {
		r, ok := parseRecord(b[i*RecordSize:])
		if !ok {
			return recs, i, fmt.Errorf("record %d (offset %d) has a bad CRC32", i, i*RecordSize)
		}
		if r.End <= r.Start || int64(r.End) > size {
			return recs, i, fmt.Errorf("record %d (offset %d): %s ends at %d, beyond the data (%d bytes)", i, i*RecordSize, r.GTID, r.End, size)
		}
		if r.Start != prevEnd && !onlyLoose(f, int64(prevEnd), int64(r.Start), h.checksum) {
			return recs, i, fmt.Errorf("record %d (offset %d): %s starts at %d, but the previous transaction ends at %d", i, i*RecordSize, r.GTID, r.Start, prevEnd)
		}
		prevEnd = r.End
		// The active file's records after limit are checked, not used.
		if limit == 0 || int64(r.End) <= limit {
			recs = append(recs, r)
		}
	}
	if !fi.Sealed {
		return recs, -1, nil
	}
	if len(b)%RecordSize != 0 {
		return recs, -1, fmt.Errorf("%d bytes: a partial record at the end", len(b))
	}
	if int64(len(recs)) != fi.Transactions {
		return recs, -1, fmt.Errorf("%d records, the manifest says %d transactions", len(recs), fi.Transactions)
	}
	if int64(prevEnd) != size && !onlyLoose(f, int64(prevEnd), size, h.checksum) {
		return recs, -1, fmt.Errorf("the records end at offset %d, the data holds more up to %d", prevEnd, size)
	}
	if n := len(recs); n > 0 {
		last := recs[n-1].GTID
		if g, ok := fi.EndPosition.Domain(last.Domain); !ok || g != last {
			return recs, -1, fmt.Errorf("the last record is %s, the manifest ends at %q", last, fi.EndPosition.String())
		}
	}
	return recs, -1, nil
}

// onlyLoose reports whether the data in [from, to) is whole events that
// belong to no transaction (an INCIDENT and the like), ending exactly at
// to.
func onlyLoose(f *os.File, from, to int64, checksum bool) bool {
	if from >= to {
		return false
	}
	res := scanRange(f, from, to, checksum, 1)
	return res.torn == nil && len(res.records) == 0 && res.end == to
}

// Append appends r's 32-byte index record, CRC included, to b.
func (r Record) Append(b []byte) []byte {
	var rec [RecordSize]byte
	r.put(rec[:])
	return append(b, rec[:]...)
}

// ParseRecords decodes whole index records, checking each one's CRC32 and
// that each starts at or after the previous one's end; anything else is
// an error wrapping understudy.ErrCorrupt.
func ParseRecords(b []byte) ([]Record, error) {
	if len(b)%RecordSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes of index records is not a multiple of %d", understudy.ErrCorrupt, len(b), RecordSize)
	}
	out := make([]Record, 0, len(b)/RecordSize)
	var prevEnd uint32
	for i := 0; i < len(b); i += RecordSize {
		r, ok := parseRecord(b[i : i+RecordSize])
		if !ok {
			return nil, fmt.Errorf("%w: index record %d has a bad CRC32", understudy.ErrCorrupt, i/RecordSize)
		}
		if r.Start < prevEnd || r.End <= r.Start {
			return nil, fmt.Errorf("%w: index record %d (%d-%d) is out of order", understudy.ErrCorrupt, i/RecordSize, r.Start, r.End)
		}
		prevEnd = r.End
		out = append(out, r)
	}
	return out, nil
}
