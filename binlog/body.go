package binlog

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/understudy-db/understudy"
)

// FormatDescription is the part of a format description event understudy
// needs.
type FormatDescription struct {
	BinlogVersion   uint16
	ServerVersion   string
	CreateTimestamp uint32
	HeaderLength    byte
	ChecksumAlg     byte
}

// ParseFormatDescription decodes a whole FORMAT_DESCRIPTION event. The body
// of a checksum-aware server always ends with the algorithm byte and a 4-byte
// checksum field.
func ParseFormatDescription(ev []byte) (FormatDescription, error) {
	if len(ev) < HeaderSize+2+50+4+1+5 {
		return FormatDescription{}, fmt.Errorf("format description event of %d bytes is too short", len(ev))
	}
	b := ev[HeaderSize:]
	fd := FormatDescription{
		BinlogVersion:   binary.LittleEndian.Uint16(b[0:]),
		ServerVersion:   string(bytes.TrimRight(b[2:52], "\x00")),
		CreateTimestamp: binary.LittleEndian.Uint32(b[52:]),
		HeaderLength:    b[56],
		ChecksumAlg:     ev[len(ev)-ChecksumSize-1],
	}
	if fd.BinlogVersion != 4 {
		return fd, fmt.Errorf("binlog version %d is not supported (want 4)", fd.BinlogVersion)
	}
	if fd.HeaderLength != HeaderSize {
		return fd, fmt.Errorf("event header length %d is not supported (want %d)", fd.HeaderLength, HeaderSize)
	}
	if fd.ChecksumAlg != ChecksumOff && fd.ChecksumAlg != ChecksumCRC32 {
		return fd, fmt.Errorf("binlog checksum algorithm %d is not supported (want NONE or CRC32)", fd.ChecksumAlg)
	}
	return fd, nil
}

// createdOffset is the offset of the create timestamp in a format
// description event.
const createdOffset = HeaderSize + 2 + 50

// SameFormat reports whether two format description events describe the
// same format: their bodies, without the create timestamp and the trailing
// checksum, are equal. Headers (timestamp, log position, flags) do not
// matter.
func SameFormat(a, b []byte) bool {
	if len(a) != len(b) || len(a) < createdOffset+4+ChecksumSize {
		return false
	}
	return bytes.Equal(a[HeaderSize:createdOffset], b[HeaderSize:createdOffset]) &&
		bytes.Equal(a[createdOffset+4:len(a)-ChecksumSize], b[createdOffset+4:len(b)-ChecksumSize])
}

// WithoutCreated returns a copy of a format description event whose create
// timestamp is 0. A non-zero create timestamp tells a replica that the
// primary has just started (it then drops temporary tables), so only the
// first file after a start carries one. The CRC32 is left for Writer.
func WithoutCreated(fde []byte) []byte {
	out := append([]byte(nil), fde...)
	if len(out) >= createdOffset+4 {
		binary.LittleEndian.PutUint32(out[createdOffset:], 0)
	}
	return out
}

// GTID event flags (flags2 in MariaDB's Gtid_log_event).
const (
	GTIDStandalone    = 0x01
	GTIDGroupCommit   = 0x02
	GTIDTransactional = 0x04
	GTIDDDL           = 0x20
	GTIDPreparedXA    = 0x40
	GTIDCompletedXA   = 0x80
)

// GTIDInfo is the decoded body of a GTID event.
type GTIDInfo struct {
	GTID  understudy.GTID
	Flags byte
}

// ParseGTIDEvent decodes a GTID event. The server id comes from the header.
func ParseGTIDEvent(ev []byte, checksum bool) (GTIDInfo, error) {
	h, err := ParseHeader(ev)
	if err != nil {
		return GTIDInfo{}, err
	}
	b := Body(ev, checksum)
	if h.Type != GTIDEvent || len(b) < 13 {
		return GTIDInfo{}, fmt.Errorf("not a GTID event (type %d, %d body bytes)", h.Type, len(b))
	}
	return GTIDInfo{
		GTID: understudy.GTID{
			Domain:   binary.LittleEndian.Uint32(b[8:]),
			ServerID: h.ServerID,
			Seq:      binary.LittleEndian.Uint64(b[0:]),
		},
		Flags: b[12],
	}, nil
}

// GTIDListFlagUntilReached is set in the count word of an artificial GTID
// list that ends a stream at @slave_until_gtid.
const GTIDListFlagUntilReached = 1 << 28

// ParseGTIDList decodes a GTID_LIST event into a position.
func ParseGTIDList(ev []byte, checksum bool) (understudy.Position, error) {
	b := Body(ev, checksum)
	if len(b) < 4 {
		return understudy.Position{}, fmt.Errorf("GTID list event too short")
	}
	n := int(binary.LittleEndian.Uint32(b) & 0x0fffffff)
	b = b[4:]
	if len(b) < n*16 {
		return understudy.Position{}, fmt.Errorf("GTID list event: %d GTIDs need %d bytes, have %d", n, n*16, len(b))
	}
	gtids := make([]understudy.GTID, n)
	for i := range gtids {
		gtids[i] = understudy.GTID{
			Domain:   binary.LittleEndian.Uint32(b[i*16:]),
			ServerID: binary.LittleEndian.Uint32(b[i*16+4:]),
			Seq:      binary.LittleEndian.Uint64(b[i*16+8:]),
		}
	}
	return understudy.NewPosition(gtids...), nil
}

// GTIDListBody encodes a position as the body of a GTID_LIST event.
func GTIDListBody(p understudy.Position, flags uint32) []byte {
	gtids := p.GTIDs()
	b := make([]byte, 4+16*len(gtids))
	binary.LittleEndian.PutUint32(b, uint32(len(gtids))|flags)
	for i, g := range gtids {
		binary.LittleEndian.PutUint32(b[4+i*16:], g.Domain)
		binary.LittleEndian.PutUint32(b[8+i*16:], g.ServerID)
		binary.LittleEndian.PutUint64(b[12+i*16:], g.Seq)
	}
	return b
}

// Query is the decoded body of a QUERY event.
type Query struct {
	Database string
	SQL      string
}

// ParseQuery decodes a QUERY event.
func ParseQuery(ev []byte, checksum bool) (Query, error) {
	db, sql, err := queryText(ev, checksum)
	if err != nil {
		return Query{}, err
	}
	return Query{Database: string(db), SQL: string(sql)}, nil
}

// queryText returns the database and the statement of a QUERY event, as
// slices of ev.
func queryText(ev []byte, checksum bool) (db, sql []byte, err error) {
	b := Body(ev, checksum)
	const post = 13
	if len(b) < post {
		return nil, nil, fmt.Errorf("query event too short")
	}
	dbLen := int(b[8])
	statusLen := int(binary.LittleEndian.Uint16(b[11:]))
	start := post + statusLen
	if len(b) < start+dbLen+1 {
		return nil, nil, fmt.Errorf("query event: lengths exceed the event")
	}
	return b[start : start+dbLen], b[start+dbLen+1:], nil
}

// ParseRotate decodes a ROTATE event: the next file's name and position.
func ParseRotate(ev []byte, checksum bool) (name string, pos uint64, err error) {
	b := Body(ev, checksum)
	if len(b) < 8 {
		return "", 0, fmt.Errorf("rotate event too short")
	}
	return string(b[8:]), binary.LittleEndian.Uint64(b), nil
}

// ReplaceQuery returns a copy of the QUERY event ev whose statement is sql,
// padded with spaces to the original statement's length, so that the
// event keeps its size and log_pos; its CRC32 is recomputed. sql must not
// be longer than the original statement.
func ReplaceQuery(ev []byte, checksum bool, sql string) ([]byte, error) {
	q, err := ParseQuery(ev, checksum)
	if err != nil {
		return nil, err
	}
	if len(sql) > len(q.SQL) {
		return nil, fmt.Errorf("query event: the new statement (%d bytes) is longer than the old one (%d)", len(sql), len(q.SQL))
	}
	out := append([]byte(nil), ev...)
	body := Body(out, checksum)
	text := body[len(body)-len(q.SQL):]
	copy(text, sql)
	for i := len(sql); i < len(text); i++ {
		text[i] = ' '
	}
	if checksum {
		n := len(out)
		binary.LittleEndian.PutUint32(out[n-ChecksumSize:], crc32.ChecksumIEEE(out[:n-ChecksumSize]))
	}
	return out, nil
}
