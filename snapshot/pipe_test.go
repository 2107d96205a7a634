package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestChunkPipeOrder: what the reader hands over reaches the writer whole
// and in order, however it is cut into buffers.
func TestChunkPipeOrder(t *testing.T) {
	var got, want bytes.Buffer
	p := startChunkPipe(&got)
	buf := p.next()
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
	if _, err := p.send(buf); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(); err != nil {
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
// nothing more, and wait returns the same error.
func TestChunkPipeWriteError(t *testing.T) {
	full := errors.New("no space left on device")
	w := &failingWriter{n: 1, err: full}
	p := startChunkPipe(w)
	defer p.wait()
	buf := p.next()
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
	if err := p.wait(); !errors.Is(err, full) {
		t.Fatalf("wait returned %v, want the write's error", err)
	}
	if w.n != 0 {
		t.Fatalf("writer state %d", w.n)
	}
}

// TestChunkPipeHugeRow: a buffer that grew to hold a huge row is not kept
// for the next ones, so a thread holds one such row at a time.
func TestChunkPipeHugeRow(t *testing.T) {
	var got bytes.Buffer
	p := startChunkPipe(&got)
	huge := bytes.Repeat([]byte{'y'}, 40<<20)
	buf := append(p.next(), huge...)
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
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	if got.Len() != len(huge)+2*pipeBuffers-1 {
		t.Fatalf("the writer got %d bytes", got.Len())
	}
}
