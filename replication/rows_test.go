package replication

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/understudy-db/understudy/binlog"
)

// TestRowsDecoderFixture counts the rows of the fixture's row events, read
// through a Reader that reuses its buffer.
func TestRowsDecoderFixture(t *testing.T) {
	b, err := os.ReadFile("../binlog/testdata/mariadb-10.11.bin")
	if err != nil {
		t.Fatal(err)
	}
	r, err := binlog.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	d := NewRowsDecoder()
	var got []RowChange
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		c, ok, err := d.Decode(ev)
		if err != nil {
			t.Fatalf("event type %d: %v", ev[4], err)
		}
		if ok {
			got = append(got, c)
		}
	}
	want := []RowChange{{"fx", "t", "insert", 2}, {"fx", "m", "insert", 1}, {"fx", "t", "update", 1}}
	if len(got) != len(want) {
		t.Fatalf("%d row events, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
