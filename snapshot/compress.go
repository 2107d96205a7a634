package snapshot

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/klauspost/compress/huff0"
	"github.com/klauspost/compress/zstd"
)

// Chunk files are zstd (RFC 8878), one or more frames, readable by any
// zstd decoder. Most table data compresses well with LZ matching, but text
// that is mostly random characters (hashes, random numbers, UUIDs, the
// sysbench tables) gains almost nothing from it and pays for the search on
// every byte. The compressor samples the start of each chunk: when LZ
// matching saves little over coding the bytes alone, it writes frames of
// literals-only blocks, Huffman-coded exactly as zstd codes literals
// (klauspost's huff0), at about half the CPU and often a better ratio.
// Otherwise it uses klauspost's zstd encoder at its fastest level.

const (
	sampleSize   = 512 << 10 // bytes sampled before choosing
	litBlockSize = 128 << 10 // zstd's largest block
	// lzGain is how much smaller LZ must make the sample to be chosen.
	lzGain = 0.95
)

type compressMode int

const (
	modeUndecided compressMode = iota
	modeLZ
	modeLiterals
)

// compressor writes one chunk's data compressed to w. It is reused across
// chunks with Reset.
type compressor struct {
	enc  *zstd.Encoder
	huff huff0.Scratch
	w    io.Writer
	mode compressMode
	buf  []byte // input not yet compressed
	out  []byte
	lits []byte // the sample as literals
	err  error
}

func newCompressor() (*compressor, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	return &compressor{enc: enc}, nil
}

// Reset starts a new chunk written to w.
func (c *compressor) Reset(w io.Writer) {
	c.w, c.mode, c.buf, c.err = w, modeUndecided, c.buf[:0], nil
}

func (c *compressor) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	switch c.mode {
	case modeUndecided:
		c.buf = append(c.buf, p...)
		if len(c.buf) >= sampleSize {
			c.err = c.decide()
		}
	case modeLZ:
		_, c.err = c.enc.Write(p)
	case modeLiterals:
		c.err = c.writeLiterals(p, false)
	}
	if c.err != nil {
		return 0, c.err
	}
	return len(p), nil
}

// Close writes what is left and ends the chunk's last frame.
func (c *compressor) Close() error {
	if c.err != nil {
		return c.err
	}
	if c.mode == modeUndecided {
		if c.err = c.decide(); c.err != nil {
			return c.err
		}
	}
	switch c.mode {
	case modeLZ:
		c.err = c.enc.Close()
	case modeLiterals:
		c.err = c.writeLiterals(nil, true)
	}
	return c.err
}

// decide compresses the buffered sample both ways, writes the smaller
// (LZ only if clearly smaller), and sets the mode for the rest.
func (c *compressor) decide() error {
	sample := c.buf
	lz := c.enc.EncodeAll(sample, c.out[:0])
	c.out = lz
	lits := c.literalFrame(sample, c.lits[:0])
	c.lits = lits
	if float64(len(lz)) < lzGain*float64(len(lits)) {
		c.mode = modeLZ
		if _, err := c.w.Write(lz); err != nil {
			return err
		}
		// The rest of the chunk is a second frame.
		c.enc.Reset(c.w)
		c.buf = c.buf[:0]
		return nil
	}
	c.mode = modeLiterals
	c.buf = c.buf[:0]
	// The sample's blocks open the literals frame; it ends at Close.
	_, err := c.w.Write(lits[:len(lits)-3])
	return err
}

// literalFrame returns a whole literals-only frame of src, with an empty
// last block (3 bytes) at its end.
func (c *compressor) literalFrame(src, dst []byte) []byte {
	dst = appendFrameHeader(dst)
	for len(src) > 0 {
		n := min(len(src), litBlockSize)
		dst = c.appendBlock(dst, src[:n])
		src = src[n:]
	}
	return appendBlockHeader(dst, true, blockRaw, 0)
}

// writeLiterals continues the literals frame with p; with last, it ends it.
// Blocks are full 128 KiB except the last one, and input is staged in buf
// only while it fills a block.
func (c *compressor) writeLiterals(p []byte, last bool) error {
	out := c.out[:0]
	if len(c.buf) > 0 {
		n := min(len(p), litBlockSize-len(c.buf))
		c.buf = append(c.buf, p[:n]...)
		p = p[n:]
		if len(c.buf) == litBlockSize || last {
			out = c.appendBlock(out, c.buf)
			c.buf = c.buf[:0]
		}
	}
	for len(p) >= litBlockSize || (last && len(p) > 0) {
		n := min(len(p), litBlockSize)
		out = c.appendBlock(out, p[:n])
		p = p[n:]
	}
	c.buf = append(c.buf, p...)
	if last {
		out = appendBlockHeader(out, true, blockRaw, 0)
	}
	c.out = out
	_, err := c.w.Write(out)
	return err
}

const (
	blockRaw        = 0
	blockRLE        = 1
	blockCompressed = 2
)

// appendFrameHeader appends the magic number and a frame header without
// content size, checksum or dictionary, with a 128 KiB window: literals
// never refer back, so one block is all a decoder needs to hold.
func appendFrameHeader(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 0xFD2FB528)
	// Frame_Header_Descriptor 0; Window_Descriptor: exponent 7 (2^17).
	return append(dst, 0x00, 7<<3)
}

func appendBlockHeader(dst []byte, last bool, typ, size int) []byte {
	h := uint32(size)<<3 | uint32(typ)<<1
	if last {
		h |= 1
	}
	return append(dst, byte(h), byte(h>>8), byte(h>>16))
}

// appendBlock appends one block of src (at most 128 KiB): Huffman-coded
// literals in four streams and no sequences, or raw or RLE when that is
// smaller.
func (c *compressor) appendBlock(dst, src []byte) []byte {
	if len(src) >= 1024 {
		c.huff.Reuse = huff0.ReusePolicyNone
		out, _, err := huff0.Compress4X(src, &c.huff)
		switch {
		case err == nil && len(out)+6 < len(src):
			// Literals_Section_Header, 5 bytes: Compressed_Literals_Block
			// (2), Size_Format 3 (four streams, 18-bit sizes), then
			// Regenerated_Size and Compressed_Size.
			h := uint64(2) | 3<<2 | uint64(len(src))<<4 | uint64(len(out))<<22
			dst = appendBlockHeader(dst, false, blockCompressed, 5+len(out)+1)
			dst = append(dst, byte(h), byte(h>>8), byte(h>>16), byte(h>>24), byte(h>>32))
			dst = append(dst, out...)
			return append(dst, 0) // Number_of_Sequences: 0
		case errors.Is(err, huff0.ErrUseRLE):
			dst = appendBlockHeader(dst, false, blockRLE, len(src))
			return append(dst, src[0])
		}
	}
	dst = appendBlockHeader(dst, false, blockRaw, len(src))
	return append(dst, src...)
}
