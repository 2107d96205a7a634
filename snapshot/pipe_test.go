package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// TestChunkPipeOrder: what the reader hands over reaches the writer whole
// and in order, however it is cut into buffers.
func TestChunkPipeOrder(t *testing.T) {
	var got, want bytes.Buffer
	p := newChunkPipe()
	buf := p.start(&got)
	for i := range 100000 {
		line := fmt.Sprintf("%d\trow %d\n", i, i*i)
		want.WriteString(line)
		buf = append(buf, line...)
		if len(buf) >= pipeBlock {
			var err error
			if buf, err = p.send(buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := p.finish(buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("the writer got %d bytes, not the %d sent in order", got.Len(), want.Len())
	}
}

// failingWriter fails every write after the first n.
type failingWriter struct {
	n   int
	err error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, w.err
	}
	w.n--
	return len(p), nil
}

// TestChunkPipeWriteError: once a write fails (a full disk), the reader
// learns it at its next hand-over with that very error, the writer gets
// nothing more, finish returns the same error, and every buffer is back.
func TestChunkPipeWriteError(t *testing.T) {
	full := errors.New("no space left on device")
	w := &failingWriter{n: 1, err: full}
	p := newChunkPipe()
	buf := p.start(w)
	var err error
	sends := 0
	for ; sends < 1000 && err == nil; sends++ {
		buf = append(buf[:0], bytes.Repeat([]byte{'x'}, pipeBlock)...)
		buf, err = p.send(buf)
	}
	if !errors.Is(err, full) {
		t.Fatalf("send returned %v after %d sends, want the write's error", err, sends)
	}
	if sends > pipeBuffers+2 {
		t.Fatalf("the reader went on for %d sends after the write failed", sends)
	}
	if err := p.finish(buf); !errors.Is(err, full) {
		t.Fatalf("finish returned %v, want the write's error", err)
	}
	if len(p.free) != pipeBuffers {
		t.Fatalf("%d of %d buffers are back after the failed chunk", len(p.free), pipeBuffers)
	}
	if w.n != 0 {
		t.Fatalf("writer state %d", w.n)
	}
}

// TestChunkPipeHugeRow: a buffer that grew to hold a huge row is not kept
// for the next ones, so a thread holds one such row at a time.
func TestChunkPipeHugeRow(t *testing.T) {
	var got bytes.Buffer
	p := newChunkPipe()
	huge := bytes.Repeat([]byte{'y'}, 40<<20)
	buf := append(p.start(&got), huge...)
	for range 2 * pipeBuffers {
		var err error
		if buf, err = p.send(buf); err != nil {
			t.Fatal(err)
		}
		if cap(buf) > 4*pipeBlock {
			t.Fatalf("an empty buffer of %d bytes came back", cap(buf))
		}
		buf = append(buf, 'z')
	}
	if err := p.finish(buf); err != nil {
		t.Fatal(err)
	}
	if got.Len() != len(huge)+2*pipeBuffers {
		t.Fatalf("the writer got %d bytes", got.Len())
	}
}

// TestChunkPipeReuse: a worker's pipe serves chunk after chunk, after a
// failed one too, with the same buffers: a chunk allocates none.
func TestChunkPipeReuse(t *testing.T) {
	p := newChunkPipe()
	chunk := func(w io.Writer, rows int) error {
		buf := p.start(w)
		for i := range rows {
			buf = fmt.Appendf(buf, "%d\n", i)
			if len(buf) >= pipeBlock {
				var err error
				if buf, err = p.send(buf); err != nil {
					p.finish(buf)
					return err
				}
			}
		}
		return p.finish(buf)
	}
	var first bytes.Buffer
	if err := chunk(&first, 200000); err != nil {
		t.Fatal(err)
	}
	if err := chunk(&failingWriter{n: 0, err: errors.New("disk full")}, 200000); err == nil {
		t.Fatal("a chunk whose writes fail succeeded")
	}
	allocs := testing.AllocsPerRun(20, func() {
		var w countingWriter
		if err := chunk(&w, 10); err != nil || w != 20 {
			t.Fatalf("%v, %d bytes", err, w)
		}
	})
	// The goroutine, its channels and the writer: no buffer.
	if allocs > 8 {
		t.Fatalf("a small chunk made %.0f allocations", allocs)
	}
	var again bytes.Buffer
	if err := chunk(&again, 200000); err != nil || !bytes.Equal(again.Bytes(), first.Bytes()) {
		t.Fatalf("a chunk after the others: %v, %d bytes, want %d", err, again.Len(), first.Len())
	}
	if len(p.free) != pipeBuffers {
		t.Fatalf("%d of %d buffers are back", len(p.free), pipeBuffers)
	}
}

// countingWriter counts what it is given.
type countingWriter int

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}
