package archive

import (
	"encoding/binary"
	"hash/crc32"

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
