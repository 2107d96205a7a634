package snapshot

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// naiveEscape is appendEscaped's specification, one byte at a time.
func naiveEscape(v []byte) []byte {
	var out []byte
	for _, b := range v {
		switch b {
		case '\\':
			out = append(out, '\\', '\\')
		case '\t':
			out = append(out, '\\', 't')
		case '\n':
			out = append(out, '\\', 'n')
		case '\r':
			out = append(out, '\\', 'r')
		case 0:
			out = append(out, '\\', '0')
		case 0x1a:
			out = append(out, '\\', 'Z')
		default:
			out = append(out, b)
		}
	}
	return out
}

func TestAppendEscaped(t *testing.T) {
	alphabet := []byte("\\\t\n\r\x00\x1aaZ09 #\x1f\x20\x5b\x5d\x7f\x80\xff\xdc")
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 5000; n++ {
		v := make([]byte, r.IntN(40))
		special := r.IntN(4) // how often a byte comes from the alphabet
		for i := range v {
			if special > 0 && r.IntN(8) < special {
				v[i] = alphabet[r.IntN(len(alphabet))]
			} else {
				v[i] = byte(r.IntN(256))
			}
		}
		want := naiveEscape(v)
		got := appendEscaped([]byte("prefix"), v)
		if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
			t.Fatalf("appendEscaped(%q) = %q, want %q", v, got[6:], want)
		}
	}
}

func TestChunkHasherRowString(t *testing.T) {
	// The row string is CONCAT_WS('#', values..., NULL flags): NULLs are
	// skipped, and flag them.
	var h chunkHasher
	h.add([][]byte{[]byte("1"), nil, []byte(""), []byte("a#b")})
	if got, want := string(h.row), "1##a#b#0100"; got != want {
		t.Fatalf("row string %q, want %q", got, want)
	}
	h.add([][]byte{nil, nil})
	if got, want := string(h.row), "11"; got != want {
		t.Fatalf("row string %q, want %q", got, want)
	}
	if h.rows != 2 || h.sum == 0 {
		t.Fatalf("rows %d sum %d", h.rows, h.sum)
	}
}
