package archiver

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"testing"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlog"
)

// fixtureEvents returns the format description and the transactions of the
// binlog fixture written by MariaDB 10.11, each a list of whole events.
func fixtureEvents(tb testing.TB) (fde []byte, txns [][][]byte) {
	tb.Helper()
	b, err := os.ReadFile("../binlog/testdata/mariadb-10.11.bin")
	if err != nil {
		tb.Fatal(err)
	}
	r, err := binlog.NewReader(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	var g binlog.Grouper
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return fde, txns
		}
		if err != nil {
			tb.Fatal(err)
		}
		ev = append([]byte(nil), ev...)
		step, err := g.Next(ev, true)
		if err != nil {
			tb.Fatal(err)
		}
		switch step {
		case binlog.Meta:
			if ev[4] == binlog.FormatDescriptionEvent {
				fde = ev
			}
		case binlog.Begin:
			txns = append(txns, [][]byte{ev})
		default:
			txns[len(txns)-1] = append(txns[len(txns)-1], ev)
		}
	}
}

// setSeq gives a GTID event sequence number seq, with its CRC32.
func setSeq(ev []byte, seq uint64) {
	binary.LittleEndian.PutUint64(ev[binlog.HeaderSize:], seq)
	n := len(ev) - binlog.ChecksumSize
	binary.LittleEndian.PutUint32(ev[n:], crc32.ChecksumIEEE(ev[:n]))
}

// BenchmarkHandle measures the archiver's path for the events of the
// stream, from the raw event to the archive's write buffer, without the
// fsyncs: one op is the fixture's 8 transactions (29 events), with new
// sequence numbers each time.
func BenchmarkHandle(b *testing.B) {
	fde, txns := fixtureEvents(b)
	a := New(understudy.Source{Name: "bench"}, b.TempDir(), nil, nil)
	w, err := archive.OpenWriter(a.Dir, archive.WriterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	if err := a.handle(w, fde); err != nil {
		b.Fatal(err)
	}
	seq := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%256 == 0 {
			b.StopTimer()
			if err := w.Sync(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		for _, t := range txns {
			seq++
			setSeq(t[0], seq)
			for _, ev := range t {
				if err := a.handle(w, ev); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
