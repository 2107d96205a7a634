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

func readHeader(f *os.File) (header, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return header{}, err
	}
	r, err := binlog.NewReader(f)
	if err != nil {
		return header{}, err
	}
	ev, err := r.Next()
	if err != nil {
		return header{}, fmt.Errorf("reading format description: %w", err)
	}
	if ev[4] != binlog.FormatDescriptionEvent {
		return header{}, fmt.Errorf("%w: first event is %s, want Format_desc", understudy.ErrCorrupt, binlog.TypeName(ev[4]))
	}
	h := header{fde: append([]byte(nil), ev...), checksum: r.Checksum()}
	ev, err = r.Next()
	if err != nil {
		return header{}, fmt.Errorf("reading GTID list: %w", err)
	}
	if ev[4] != binlog.GTIDListEvent {
		return header{}, fmt.Errorf("%w: second event is %s, want Gtid_list", understudy.ErrCorrupt, binlog.TypeName(ev[4]))
	}
	if h.start, err = binlog.ParseGTIDList(ev, h.checksum); err != nil {
		return header{}, fmt.Errorf("%w: %v", understudy.ErrCorrupt, err)
	}
	h.created = time.Unix(int64(binlogTimestamp(ev)), 0)
	h.end = r.Offset()
	return h, nil
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
	res := scanResult{end: off}
	if off >= st.Size() {
		return res, nil
	}
	r := binlog.NewReaderAt(io.NewSectionReader(f, off, st.Size()-off), off, checksum)
	var g binlog.Grouper
	var cur Record
	for {
		start := r.Offset()
		ev, err := r.Next()
		if err == io.EOF {
			if g.InGroup() {
				res.torn = fmt.Errorf("transaction %s at offset %d is incomplete", cur.GTID, cur.Start)
			}
			return res, nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("partial event at offset %d", start)
			}
			res.torn = err
			return res, nil
		}
		step, err := g.Next(ev, checksum)
		if err != nil {
			res.torn = fmt.Errorf("offset %d: %v", start, err)
			return res, nil
		}
		switch step {
		case binlog.Begin:
			gi, err := binlog.ParseGTIDEvent(ev, checksum)
			if err != nil {
				res.torn = fmt.Errorf("offset %d: %v", start, err)
				return res, nil
			}
			cur = Record{Start: uint32(start), GTID: gi.GTID}
		case binlog.End:
			cur.End = uint32(r.Offset())
			cur.Time = binlogTimestamp(ev)
			res.records = append(res.records, cur)
			res.end = r.Offset()
		case binlog.Single, binlog.Meta:
			res.end = r.Offset()
		}
	}
}

func binlogTimestamp(ev []byte) uint32 {
	return uint32(ev[0]) | uint32(ev[1])<<8 | uint32(ev[2])<<16 | uint32(ev[3])<<24
}
