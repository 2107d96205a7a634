package snapshot

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// compressorInputs covers both modes and the block edge cases.
func compressorInputs() map[string][]byte {
	r := rand.New(rand.NewPCG(3, 4))
	digits := func(n int) []byte { // sysbench-like: random digits, little to match
		b := make([]byte, n)
		for i := range b {
			b[i] = "0123456789-\t\n"[r.IntN(13)]
		}
		return b
	}
	random := make([]byte, 700<<10)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	var text bytes.Buffer
	for i := 0; text.Len() < 3<<20; i++ {
		fmt.Fprintf(&text, "%d\tcustomer-%d\t{\"status\": \"active\", \"plan\": \"basic\"}\t2026-11-%02d\n", i, i%1000, i%28+1)
	}
	return map[string][]byte{
		"empty":          nil,
		"tiny":           []byte("1\ta\n"),
		"under a block":  digits(1000),
		"one block":      digits(litBlockSize),
		"sample exactly": digits(sampleSize),
		"digits":         digits(3<<20 + 12345),
		"random bytes":   random,
		"one byte value": bytes.Repeat([]byte{'x'}, 600<<10),
		"text":           text.Bytes(),
	}
}

func TestCompressorRoundTrip(t *testing.T) {
	c, err := newCompressor()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	modes := map[compressMode]int{}
	for name, in := range compressorInputs() {
		for _, piece := range []int{1 << 10, 97 << 10, 300 << 10} {
			var out bytes.Buffer
			c.Reset(&out)
			for p := in; len(p) > 0; {
				n := min(len(p), piece)
				if _, err := c.Write(p[:n]); err != nil {
					t.Fatal(err)
				}
				p = p[n:]
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			modes[c.mode]++
			if err := dec.Reset(bytes.NewReader(out.Bytes())); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(dec)
			if err != nil {
				t.Fatalf("%s, %d-byte writes: decode: %v", name, piece, err)
			}
			if !bytes.Equal(got, in) {
				t.Fatalf("%s, %d-byte writes: %d bytes back, %d in", name, piece, len(got), len(in))
			}
			if len(in) > 1<<20 && name != "random bytes" && out.Len() > len(in)/2 {
				t.Errorf("%s: %d bytes compressed to %d", name, len(in), out.Len())
			}
		}
	}
	if modes[modeLZ] == 0 || modes[modeLiterals] == 0 {
		t.Fatalf("modes used %v: want both", modes)
	}
}
