package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/binlog"
)

// header is what starts every archived file: magic, the source's format
// description and a GTID list with the archive position before the file.
type header struct {
	fde      []byte
	checksum bool
	start    understudy.Position
	end      int64 // offset of the first transaction
	// created is the GTID list's timestamp: when understudy created the
	// file (older archives: the primary's format description time).
	created time.Time
}

// readHeader reads and checks the header of an archived file. A header that
// is not what understudy writes is an error wrapping understudy.ErrCorrupt.
func readHeader(f *os.File) (header, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return header{}, err
	}
	// Small reads: the header is a few hundred bytes, and the reader's
	// buffer would otherwise read a MiB of the file.
	r, err := binlog.NewReader(smallReads{f})
	if err != nil {
		return header{}, fmt.Errorf("%w: %v", understudy.ErrCorrupt, err)
	}
	ev, err := r.Next()
	if err != nil {
		return header{}, fmt.Errorf("reading format description: %w", corruptEOF(err))
	}
	if ev[4] != binlog.FormatDescriptionEvent {
		return header{}, fmt.Errorf("%w: first event is %s, want Format_desc", understudy.ErrCorrupt, binlog.TypeName(ev[4]))
	}
	// understudy clears the in-use flag, and the checksum check would
	// accept a byte that sets it.
	if h, _ := binlog.ParseHeader(ev); h.Flags&binlog.FlagBinlogInUse != 0 {
		return header{}, fmt.Errorf("%w: the format description has the in-use flag set", understudy.ErrCorrupt)
	}
	h := header{fde: append([]byte(nil), ev...), checksum: r.Checksum()}
	ev, err = r.Next()
	if err != nil {
		return header{}, fmt.Errorf("reading GTID list: %w", corruptEOF(err))
	}
	if ev[4] != binlog.GTIDListEvent {
		return header{}, fmt.Errorf("%w: second event is %s, want Gtid_list", understudy.ErrCorrupt, binlog.TypeName(ev[4]))
	}
	if h.start, err = binlog.ParseGTIDList(ev, h.checksum); err != nil {
		return header{}, fmt.Errorf("%w: %v", understudy.ErrCorrupt, err)
	}
	// understudy writes the GTID list with no flags and nothing after its
	// GTIDs: a longer body means a damaged checksum setting (the format
	// description's algorithm byte) and CRCs read as data.
	if b := binlog.Body(ev, h.checksum); len(b) != 4+16*len(h.start.GTIDs()) {
		return header{}, fmt.Errorf("%w: GTID list of %d GTIDs has %d body bytes", understudy.ErrCorrupt, len(h.start.GTIDs()), len(b))
	}
	h.created = time.Unix(int64(binlogTimestamp(ev)), 0)
	h.end = r.Offset()
	return h, nil
}

// corruptEOF turns the end of a file inside an event that must be whole
// into an ErrCorrupt.
func corruptEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", understudy.ErrCorrupt, io.ErrUnexpectedEOF)
	}
	return err
}

// smallReads reads at most 4 KiB at a time.
type smallReads struct{ r io.Reader }

func (s smallReads) Read(p []byte) (int, error) {
	if len(p) > 4<<10 {
		p = p[:4<<10]
	}
	return s.r.Read(p)
}

// scanResult is what scanning a file's tail found.
type scanResult struct {
	records []Record
	end     int64 // end of the last whole unit
	// torn describes why scanning stopped before the end of the file, if it
	// did: a partial event, a bad checksum, an open transaction.
	torn error
}

// scanTail reads events from offset off and returns the whole transactions
// found and the offset after the last whole unit.
func scanTail(f *os.File, off int64, checksum bool) (scanResult, error) {
	st, err := f.Stat()
	if err != nil {
		return scanResult{}, err
	}
	return scanRange(f, off, st.Size(), checksum, 0), nil
}

// scanRange reads the events in [from, to) and returns the whole
// transactions found, at most max of them (max 0: all), and the offset
// after the last whole unit read. It rebuilds index records from the data,
// cutting the events into transactions with the assembler that the live
// stream's Writer uses, so that recovery agrees with what was written.
func scanRange(f *os.File, from, to int64, checksum bool, max int) scanResult {
	res := scanResult{end: from}
	if from >= to {
		return res
	}
	r := binlog.NewReaderAt(io.NewSectionReader(f, from, to-from), from, checksum)
	a := assembler{checksum: checksum}
	for {
		start := r.Offset()
		ev, err := r.Next()
		if err == io.EOF {
			if a.writing() {
				res.torn = fmt.Errorf("transaction %s at offset %d is incomplete", a.cur.GTID, a.cur.Start)
			}
			return res
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("partial event at offset %d", start)
			}
			res.torn = err
			return res
		}
		k, err := a.next(ev, start, nil)
		if err != nil {
			res.torn = fmt.Errorf("offset %d: %v", start, err)
			return res
		}
		switch k {
		case Appended:
		case Committed:
			res.records = append(res.records, a.cur)
			res.end = r.Offset()
			if max > 0 && len(res.records) == max {
				return res
			}
		default: // a unit of its own
			res.end = r.Offset()
		}
	}
}

func binlogTimestamp(ev []byte) uint32 {
	return uint32(ev[0]) | uint32(ev[1])<<8 | uint32(ev[2])<<16 | uint32(ev[3])<<24
}
