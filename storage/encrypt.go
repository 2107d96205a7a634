package storage

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// Encrypted is a decorator that stores every object as an age file
// (age-encryption.org/v1) encrypted to the keys' recipients, and decrypts
// it on reading with the keys' identities: stock `age -d -i age.key OBJECT`
// decrypts any object it wrote. What is written is encrypted, not
// compressed: a layer that compresses does it first (the object is then
// age(zstd(data))). Names, sizes and times stay visible to the store.
//
// Its Put produces the age file on the fly, as a reader at any offset, so
// that a retry, a multipart upload in parallel parts, or a signature pass
// reads the same bytes again; nothing is buffered beyond a few 64 KiB
// chunks. Get of a whole object decrypts as it streams; Get of a range
// reads only the age header, the final chunk (which authenticates the
// size) and the chunks of the range. Stat and List report the stored
// (encrypted) sizes.
type Encrypted struct {
	next Backend
	keys *Keys
}

var _ Backend = (*Encrypted)(nil)

// NewEncrypted wraps b with encryption by keys. Without recipients, writes
// fail with ErrNoKey; without identities, reads do.
func NewEncrypted(b Backend, keys *Keys) *Encrypted {
	if keys == nil {
		keys = &Keys{}
	}
	return &Encrypted{next: b, keys: keys}
}

// Where implements Locator.
func (e *Encrypted) Where(name string) string { return where(e.next, name) }

func (e *Encrypted) fail(op, name string, err error) error {
	var se *Error
	if errors.As(err, &se) {
		return err
	}
	return &Error{Op: op, Where: where(e.next, name), Err: err}
}

func (e *Encrypted) seal(op, name string, r io.ReaderAt, size int64) (*sealer, error) {
	if len(e.keys.Recipients) == 0 {
		return nil, e.fail(op, name, fmt.Errorf("%w: writing an encrypted object needs age recipients (storage.encryption.recipients_file)", ErrNoKey))
	}
	if size < 0 {
		return nil, e.fail(op, name, fmt.Errorf("negative size %d", size))
	}
	s, err := newSealer(r, size, e.keys.Recipients)
	if err != nil {
		return nil, e.fail(op, name, err)
	}
	return s, nil
}

// Seal returns the age file that Put would store for the first size bytes
// of r, as a reader at any offset that reads the same bytes each time, and
// its size. A caller that must know the stored bytes before it writes them
// (their sha256, to record in a manifest) seals them with Seal, reads the
// result, and writes that same reader to the backend below with Put: it is
// what Put would have stored.
func (e *Encrypted) Seal(r io.ReaderAt, size int64) (io.ReaderAt, int64, error) {
	s, err := e.seal("seal", "", r, size)
	if err != nil {
		return nil, 0, err
	}
	return s, s.Size(), nil
}

// Put implements Backend.
func (e *Encrypted) Put(ctx context.Context, name string, r io.ReaderAt, size int64) (Info, error) {
	s, err := e.seal("put", name, r, size)
	if err != nil {
		return Info{}, err
	}
	return e.next.Put(ctx, name, s, s.Size())
}

// PutIfAbsent implements Backend.
func (e *Encrypted) PutIfAbsent(ctx context.Context, name string, r io.ReaderAt, size int64) (Info, error) {
	s, err := e.seal("put-if-absent", name, r, size)
	if err != nil {
		return Info{}, err
	}
	return e.next.PutIfAbsent(ctx, name, s, s.Size())
}

// ReplaceIf implements Backend.
func (e *Encrypted) ReplaceIf(ctx context.Context, name string, r io.ReaderAt, size int64, etag string) (Info, error) {
	s, err := e.seal("replace-if", name, r, size)
	if err != nil {
		return Info{}, err
	}
	return e.next.ReplaceIf(ctx, name, s, s.Size(), etag)
}

// Stat implements Backend; the size is the stored one.
func (e *Encrypted) Stat(ctx context.Context, name string) (Info, error) {
	return e.next.Stat(ctx, name)
}

// List implements Backend; the sizes are the stored ones.
func (e *Encrypted) List(ctx context.Context, prefix string, fn func(Info) error) error {
	return e.next.List(ctx, prefix, fn)
}

// Delete implements Backend.
func (e *Encrypted) Delete(ctx context.Context, name string) error {
	return e.next.Delete(ctx, name)
}

// Get implements Backend: off and length count plaintext bytes.
func (e *Encrypted) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if len(e.keys.Identities) == 0 {
		return nil, e.fail("get", name, fmt.Errorf("%w: reading an encrypted object needs the age identity (storage.encryption.identity_file)", ErrNoKey))
	}
	if off < 0 {
		return nil, e.fail("get", name, fmt.Errorf("%w: negative offset %d", ErrRange, off))
	}
	if off == 0 && length < 0 {
		return e.getAll(ctx, name)
	}
	info, err := e.next.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	src := &remoteAt{ctx: ctx, b: e.next, name: name, size: info.Size}
	pt, ptSize, err := age.DecryptReaderAt(src, info.Size, e.keys.Identities...)
	if err != nil {
		src.Close()
		return nil, e.fail("get", name, decryptErr(err, src.err))
	}
	if off > ptSize {
		src.Close()
		return nil, e.fail("get", name, fmt.Errorf("%w: offset %d, size %d", ErrRange, off, ptSize))
	}
	n := ptSize - off
	if length >= 0 && length < n {
		n = length
	}
	if n > 0 {
		// Read the chunks of the range in one request.
		chunks := max(1, (ptSize+ageChunk-1)/ageChunk)
		payload := info.Size - ptSize - chunks*chacha20poly1305.Overhead
		first, last := off/ageChunk, (off+n-1)/ageChunk
		src.window(payload+first*ageEncChunk, min(info.Size, payload+(last+1)*ageEncChunk))
	}
	return &decryptedReader{e: e, name: name, r: io.NewSectionReader(pt, off, n), src: src, trap: func() error { return src.err }}, nil
}

// getAll streams the whole object through age.Decrypt.
func (e *Encrypted) getAll(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := e.next.Get(ctx, name, 0, -1)
	if err != nil {
		return nil, err
	}
	t := &trapReader{r: rc}
	pr, err := age.Decrypt(t, e.keys.Identities...)
	if err != nil {
		rc.Close()
		return nil, e.fail("get", name, decryptErr(err, t.err))
	}
	return &decryptedReader{e: e, name: name, r: pr, src: rc, trap: func() error { return t.err }}, nil
}

// decryptedReader is the plaintext of an object; its errors say whether
// the store failed (the store's error, retryable or not) or the object
// does not decrypt (ErrCorrupt).
type decryptedReader struct {
	e    *Encrypted
	name string
	r    io.Reader
	src  io.Closer
	trap func() error
}

func (d *decryptedReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = d.e.fail("get", d.name, decryptErr(err, d.trap()))
	}
	return n, err
}

func (d *decryptedReader) Close() error { return d.src.Close() }

// decryptErr tells what made age fail: the store (storeErr, which age saw
// as a read error), the keys, or the object's bytes.
func decryptErr(err, storeErr error) error {
	var noMatch *age.NoIdentityMatchError
	switch {
	case storeErr != nil:
		return storeErr
	case errors.As(err, &noMatch):
		return fmt.Errorf("%w (%v; check storage.encryption.identity_file)", ErrWrongKey, err)
	}
	return fmt.Errorf("%w: not a whole age file encrypted by understudy: %v", ErrCorrupt, err)
}

// trapped is a store's read error as age sees it: not io.EOF nor
// io.ErrUnexpectedEOF, which age takes for the end of the file.
type trapped struct{ err error }

func (t trapped) Error() string { return t.err.Error() }
func (t trapped) Unwrap() error { return t.err }

// trapReader keeps the first error of the store.
type trapReader struct {
	r   io.Reader
	err error
}

func (t *trapReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		if t.err == nil {
			t.err = err
		}
		return n, trapped{err}
	}
	return n, err
}

// remoteAt reads an object at offsets by ranged Gets, in one request for
// each run of consecutive reads: a read inside the window set by window
// asks for everything up to the window's end, any other for at least
// readAhead bytes.
type remoteAt struct {
	ctx  context.Context
	b    Backend
	name string
	size int64

	mu               sync.Mutex
	rc               io.ReadCloser
	pos, end         int64 // the open stream's next offset and end
	winStart, winEnd int64
	err              error // the first error of the store
}

const readAhead = 16 << 10

func (r *remoteAt) window(start, end int64) {
	r.mu.Lock()
	r.winStart, r.winEnd = start, end
	r.mu.Unlock()
}

func (r *remoteAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if off >= r.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), r.size-off)
	if r.rc == nil || r.pos != off || off+want > r.end {
		r.closeLocked()
		end := off + want
		if off >= r.winStart && off < r.winEnd {
			end = max(end, r.winEnd)
		} else {
			end = max(end, min(r.size, off+readAhead))
		}
		rc, err := r.b.Get(r.ctx, r.name, off, end-off)
		if err != nil {
			if r.err == nil {
				r.err = err
			}
			return 0, trapped{err}
		}
		r.rc, r.pos, r.end = rc, off, end
	}
	n, err := io.ReadFull(r.rc, p[:want])
	r.pos += int64(n)
	if err != nil {
		if r.err == nil {
			r.err = err
		}
		r.closeLocked()
		return n, trapped{err}
	}
	if want < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (r *remoteAt) closeLocked() {
	if r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
}

func (r *remoteAt) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLocked()
	return nil
}

// The age payload: 64 KiB chunks of plaintext, each sealed with
// ChaCha20-Poly1305 (a 16-byte tag).
const (
	ageChunk    = 64 << 10
	ageEncChunk = ageChunk + chacha20poly1305.Overhead
)

// sealer is an age file as an io.ReaderAt: the header made by age, then
// the payload sealed chunk by chunk on demand (age's STREAM: chunk i is
// sealed with the 12-byte nonce i (11 bytes, big-endian) and a last-chunk
// flag byte, under the key HKDF-SHA-256(file key, nonce, "payload")). Any
// range can be read any number of times, and it is the same bytes.
type sealer struct {
	hdr    []byte // the age header and the payload nonce
	aead   cipher.AEAD
	src    io.ReaderAt
	size   int64 // plaintext
	chunks int64

	mu    sync.Mutex
	cache [8]sealedChunk
	next  int
}

type sealedChunk struct {
	i  int64
	ct []byte
}

// keyCatcher is a recipient that notes the file key age wraps, so that
// the payload can be sealed at any offset.
type keyCatcher struct {
	r   age.Recipient
	key *[]byte
}

func (k keyCatcher) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	*k.key = bytes.Clone(fileKey)
	return k.r.Wrap(fileKey)
}

func (k keyCatcher) WrapWithLabels(fileKey []byte) ([]*age.Stanza, []string, error) {
	*k.key = bytes.Clone(fileKey)
	if rl, ok := k.r.(age.RecipientWithLabels); ok {
		return rl.WrapWithLabels(fileKey)
	}
	s, err := k.r.Wrap(fileKey)
	return s, nil, err
}

func newSealer(src io.ReaderAt, size int64, recipients []age.Recipient) (*sealer, error) {
	// age writes the header and the payload nonce of an empty file, whose
	// payload is then a single empty last chunk: its 16-byte tag.
	var fileKey []byte
	rs := make([]age.Recipient, len(recipients))
	for i, r := range recipients {
		rs[i] = keyCatcher{r: r, key: &fileKey}
	}
	er, err := age.EncryptReader(bytes.NewReader(nil), rs...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	empty, err := io.ReadAll(er)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	const nonceSize = 16
	if len(fileKey) != 16 || len(empty) < nonceSize+chacha20poly1305.Overhead {
		return nil, errors.New("encrypt: unexpected age header")
	}
	hdr := empty[:len(empty)-chacha20poly1305.Overhead]
	key, err := hkdf.Key(sha256.New, fileKey, hdr[len(hdr)-nonceSize:], "payload", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	s := &sealer{hdr: hdr, aead: aead, src: DataReader(src, size), size: size, chunks: max(1, (size+ageChunk-1)/ageChunk)}
	for i := range s.cache {
		s.cache[i].i = -1
	}
	// The empty file's last chunk, sealed here, must be age's: this checks
	// the key and the nonce.
	if tag := aead.Seal(nil, chunkNonce(0, true), nil, nil); !bytes.Equal(tag, empty[len(hdr):]) {
		return nil, errors.New("encrypt: the payload key does not match age's")
	}
	return s, nil
}

// Size is the size of the age file.
func (s *sealer) Size() int64 {
	return int64(len(s.hdr)) + s.size + s.chunks*chacha20poly1305.Overhead
}

func chunkNonce(i int64, last bool) []byte {
	n := make([]byte, chacha20poly1305.NonceSize)
	binary.BigEndian.PutUint64(n[3:11], uint64(i))
	if last {
		n[11] = 1
	}
	return n
}

// chunk returns the sealed chunk i.
func (s *sealer) chunk(i int64) ([]byte, error) {
	s.mu.Lock()
	for _, c := range s.cache {
		if c.i == i {
			s.mu.Unlock()
			return c.ct, nil
		}
	}
	s.mu.Unlock()
	start := i * ageChunk
	pt := make([]byte, min(ageChunk, s.size-start), ageEncChunk)
	if n, err := s.src.ReadAt(pt, start); n < len(pt) {
		return nil, err
	}
	ct := s.aead.Seal(pt[:0], chunkNonce(i, i == s.chunks-1), pt, nil)
	s.mu.Lock()
	s.cache[s.next] = sealedChunk{i: i, ct: ct}
	s.next = (s.next + 1) % len(s.cache)
	s.mu.Unlock()
	return ct, nil
}

// ReadAt implements io.ReaderAt.
func (s *sealer) ReadAt(p []byte, off int64) (int, error) {
	total := s.Size()
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	n := 0
	for n < len(p) && off < total {
		if h := int64(len(s.hdr)); off < h {
			c := copy(p[n:], s.hdr[off:])
			n += c
			off += int64(c)
			continue
		}
		po := off - int64(len(s.hdr))
		ct, err := s.chunk(po / ageEncChunk)
		if err != nil {
			return n, err
		}
		c := copy(p[n:], ct[po%ageEncChunk:])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// CanRead tells whether it holds an identity to decrypt with.
func (e *Encrypted) CanRead() bool { return len(e.keys.Identities) > 0 }
