package binlog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"github.com/understudy-db/understudy"
)

// Writer appends events to a binlog file, rewriting each event's log_pos to
// its end offset in this file and recomputing its CRC32. Events are written
// as they come; nothing is buffered here beyond a header.
type Writer struct {
	w        io.Writer
	off      int64
	checksum bool
	hdr      [HeaderSize]byte
	crc      [ChecksumSize]byte
}

// NewWriter returns a Writer that appends at offset off. checksum says
// whether events carry a CRC32 (from the file's format description).
func NewWriter(w io.Writer, off int64, checksum bool) *Writer {
	return &Writer{w: w, off: off, checksum: checksum}
}

// Offset is the end offset of the last event written.
func (w *Writer) Offset() int64 { return w.off }

// WriteHeader writes the magic, the format description fde and a GTID list
// holding pos: the start of a binlog file. The GTID list's timestamp is
// created, or the format description's when created is 0. The writer must
// be at offset 0.
func (w *Writer) WriteHeader(fde []byte, pos understudy.Position, created uint32) error {
	if w.off != 0 {
		return fmt.Errorf("binlog header at offset %d", w.off)
	}
	fd, err := ParseFormatDescription(fde)
	if err != nil {
		return err
	}
	w.checksum = fd.ChecksumAlg == ChecksumCRC32
	if _, err := w.w.Write(Magic); err != nil {
		return err
	}
	w.off = int64(len(Magic))
	if err := w.WriteEvent(fde); err != nil {
		return err
	}
	h, _ := ParseHeader(fde)
	if created != 0 {
		h.Timestamp = created
	}
	return w.WriteEvent(NewEvent(Header{Timestamp: h.Timestamp, Type: GTIDListEvent, ServerID: h.ServerID}, GTIDListBody(pos, 0), w.checksum))
}

// WriteEvent appends one whole event (header, body and, if the file is
// checksummed, the CRC32 that is replaced).
func (w *Writer) WriteEvent(ev []byte) error {
	h, err := ParseHeader(ev)
	if err != nil {
		return err
	}
	if int(h.Size) != len(ev) {
		return fmt.Errorf("%s event: header says %d bytes, have %d", TypeName(h.Type), h.Size, len(ev))
	}
	end := w.off + int64(len(ev))
	if end > math.MaxUint32 {
		return fmt.Errorf("binlog file would pass 4 GiB at offset %d", w.off)
	}
	h.LogPos = uint32(end)
	if h.Type == FormatDescriptionEvent {
		h.Flags &^= FlagBinlogInUse
	}
	h.Put(w.hdr[:])
	checksum := w.checksum || h.Type == FormatDescriptionEvent
	body := ev[HeaderSize:]
	if checksum {
		body = ev[HeaderSize : len(ev)-ChecksumSize]
	}
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return err
	}
	if _, err := w.w.Write(body); err != nil {
		return err
	}
	if checksum {
		if w.checksum {
			c := crc32.Update(crc32.ChecksumIEEE(w.hdr[:]), crc32.IEEETable, body)
			binary.LittleEndian.PutUint32(w.crc[:], c)
		} else {
			copy(w.crc[:], ev[len(ev)-ChecksumSize:])
		}
		if _, err := w.w.Write(w.crc[:]); err != nil {
			return err
		}
	}
	w.off = end
	return nil
}

// NewEvent builds a whole event from a header and a body; Size is set, and a
// CRC32 appended when checksum is true. LogPos is left for the Writer.
func NewEvent(h Header, body []byte, checksum bool) []byte {
	n := HeaderSize + len(body)
	if checksum {
		n += ChecksumSize
	}
	ev := make([]byte, n)
	h.Size = uint32(n)
	h.Put(ev)
	copy(ev[HeaderSize:], body)
	if checksum {
		binary.LittleEndian.PutUint32(ev[n-ChecksumSize:], crc32.ChecksumIEEE(ev[:n-ChecksumSize]))
	}
	return ev
}

// ErrNotBinlog means a file does not start with the binlog magic.
var ErrNotBinlog = errors.New("not a binlog file (bad magic)")

// Reader reads the events of a binlog file one by one with a buffer as big
// as the largest event. It verifies CRC32s when the format description asks
// for them.
type Reader struct {
	r        *bufio.Reader
	off      int64
	checksum bool
	verify   bool
	buf      []byte
	// FormatDescription is the file's format description event, once read.
	FormatDescription []byte
}

// MaxEventSize bounds the size of one event: MariaDB's largest packet
// (max_allowed_packet and slave_max_allowed_packet are at most 1 GiB) plus
// room for the event's header and checksum.
const MaxEventSize = 1<<30 + 1<<20

// NewReader reads the magic and returns a Reader positioned at offset 4.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var m [4]byte
	if _, err := io.ReadFull(br, m[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotBinlog, err)
	}
	if !bytes.Equal(m[:], Magic) {
		return nil, ErrNotBinlog
	}
	return &Reader{r: br, off: 4, verify: true}, nil
}

// NewReaderAt returns a Reader over r whose first byte is at file offset
// off, with the checksum setting of the file.
func NewReaderAt(r io.Reader, off int64, checksum bool) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 1<<20), off: off, checksum: checksum, verify: true}
}

// Reset makes r read from src, whose first byte is at file offset off,
// keeping its buffers.
func (r *Reader) Reset(src io.Reader, off int64, checksum bool) {
	r.r.Reset(src)
	r.off, r.checksum = off, checksum
}

// Offset is the file offset of the next event.
func (r *Reader) Offset() int64 { return r.off }

// Checksum reports whether the file's events end in a CRC32.
func (r *Reader) Checksum() bool { return r.checksum }

// Next returns the next whole event. The slice is valid until the next call.
// At a clean end it returns io.EOF; a partial event at the end gives
// io.ErrUnexpectedEOF.
func (r *Reader) Next() ([]byte, error) {
	if cap(r.buf) < HeaderSize {
		r.buf = make([]byte, 64<<10)
	}
	hb := r.buf[:HeaderSize]
	if n, err := io.ReadFull(r.r, hb); err != nil {
		if err == io.EOF && n == 0 {
			return nil, io.EOF
		}
		return nil, io.ErrUnexpectedEOF
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return nil, fmt.Errorf("offset %d: %w: %v", r.off, understudy.ErrCorrupt, err)
	}
	if h.Size > MaxEventSize {
		// A flipped byte in the size field, never a real event: do not
		// allocate what it claims.
		return nil, fmt.Errorf("offset %d: %w: event size %d exceeds the largest possible event (%d)", r.off, understudy.ErrCorrupt, h.Size, MaxEventSize)
	}
	if int(h.Size) > cap(r.buf) {
		nb := make([]byte, h.Size)
		copy(nb, hb)
		r.buf = nb
	}
	ev := r.buf[:h.Size]
	if _, err := io.ReadFull(r.r, ev[HeaderSize:]); err != nil {
		return nil, io.ErrUnexpectedEOF
	}
	if h.Type == FormatDescriptionEvent {
		fd, err := ParseFormatDescription(ev)
		if err != nil {
			return nil, fmt.Errorf("offset %d: %w: %v", r.off, understudy.ErrCorrupt, err)
		}
		r.checksum = fd.ChecksumAlg == ChecksumCRC32
		r.FormatDescription = append(r.FormatDescription[:0], ev...)
	}
	if r.verify && r.checksum {
		if err := VerifyChecksum(ev); err != nil {
			return nil, fmt.Errorf("offset %d: %s event: %w: %v", r.off, TypeName(h.Type), understudy.ErrCorrupt, err)
		}
	}
	r.off += int64(h.Size)
	return ev, nil
}
