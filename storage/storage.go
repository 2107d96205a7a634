// Package storage is understudy's blob store: a small interface (Backend)
// that the archive and snapshot layers use for everything that leaves the
// host, the decorators that any backend is wrapped in (retries, timeouts,
// a concurrency limit) and encryption at rest with age. The backends live
// in their own packages: storage/local (a directory) and storage/s3 (an
// S3-compatible object store). storage/storagetest is the conformance suite
// that every backend runs. docs/storage.md describes all of it.
//
// Glossary:
//
//   - Object: a named sequence of bytes, written whole and read whole or by
//     range. Objects are never appended to.
//   - Name: a slash-separated path such as "db1/binlog.000042" (ValidName).
//     A store is flat: "directories" are only prefixes of names.
//   - ETag: an opaque string that changes whenever an object is written
//     again; ReplaceIf compares it.
//   - Retryable: an error that may go away when the same call is made again
//     (the store was unreachable, overloaded, or made no progress); decided
//     by the error's cause (IsRetryable), never by its text.
package storage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/understudy-db/understudy"
)

// Backend is a store of named objects. Implementations are safe for
// concurrent use, also by several processes on one store, and every
// operation is atomic: a reader sees an object whole or not at all.
//
// The layer above owns the names, the manifests and what they mean; a
// Backend only stores bytes.
type Backend interface {
	// Put stores the first size bytes of r as the object name, replacing
	// any object of that name. r is read from offset 0 for each attempt (a
	// retry reads it again), possibly by several goroutines at once; it
	// must hold at least size bytes.
	Put(ctx context.Context, name string, r io.ReaderAt, size int64) (Info, error)
	// PutIfAbsent stores the object like Put only if no object of that name
	// exists; otherwise it fails with ErrExists and changes nothing. Of
	// several concurrent callers, exactly one succeeds.
	PutIfAbsent(ctx context.Context, name string, r io.ReaderAt, size int64) (Info, error)
	// ReplaceIf replaces the object like Put only if its ETag is etag:
	// otherwise it fails with ErrPrecondition (ErrNotExist when the object
	// is gone) and changes nothing.
	ReplaceIf(ctx context.Context, name string, r io.ReaderAt, size int64, etag string) (Info, error)
	// Get reads length bytes of the object from offset off, or up to its
	// end when length is negative; fewer when the object ends first. off
	// may equal the object's size (nothing is read); beyond it, Get fails
	// with ErrRange. The caller closes the reader.
	Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	// Stat returns the object's size, ETag and modification time.
	Stat(ctx context.Context, name string) (Info, error)
	// List calls fn for every object whose name begins with prefix (a plain
	// string prefix: "db1/bin" matches "db1/binlog.000001"), in ascending
	// byte order of the names. An error from fn stops the listing and is
	// returned as it is.
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// Delete removes the object. Removing an object that does not exist is
	// not an error.
	Delete(ctx context.Context, name string) error
}

// Info describes a stored object.
type Info struct {
	Name string
	// Size is the number of bytes stored (for an encrypted object, the
	// size of the age file, not of the plaintext).
	Size int64
	// ETag identifies this version of the object: it changes when the
	// object is written again. It is opaque; compare it only for equality.
	ETag string
	// ModTime is when the object was written; zero where the store does
	// not say (the Info that an S3 Put returns).
	ModTime time.Time
}

// Errors that describe what went wrong with an object. Test them with
// errors.Is; none of them is retryable.
var (
	// ErrNotExist: no object has that name.
	ErrNotExist = errors.New("object does not exist")
	// ErrExists: PutIfAbsent found an object of that name.
	ErrExists = errors.New("object already exists")
	// ErrPrecondition: ReplaceIf found another version of the object than
	// the ETag given.
	ErrPrecondition = errors.New("object changed (ETag does not match)")
	// ErrRange: Get's offset lies beyond the end of the object.
	ErrRange = errors.New("offset beyond the end of the object")
	// ErrInvalidName: the name is not a ValidName.
	ErrInvalidName = errors.New("invalid object name")
	// ErrUncertain is added to ErrExists or ErrPrecondition when an earlier
	// attempt of the same call failed in a way that leaves open whether it
	// was carried out (the reply was lost): the object found may be the
	// one this call wrote. A caller that must know reads it back.
	ErrUncertain = errors.New("an earlier attempt may have written it")
	// ErrWrongKey: an encrypted object was not encrypted to any of the
	// identities given.
	ErrWrongKey = errors.New("no identity matches: the object is encrypted to other recipients")
	// ErrNoKey: an encrypted object was to be written without recipients,
	// or read without an identity.
	ErrNoKey = errors.New("no key to do it with")
)

// Errors that say the store could not answer; both are retryable.
var (
	// ErrUnavailable: the store answered that it cannot serve the request
	// now (an HTTP 5xx, 429 or 408 answer, SlowDown, a conflicting
	// concurrent conditional write).
	ErrUnavailable = errors.New("store unavailable")
	// ErrTimeout: the operation made no progress for the timeout of the
	// Timeout decorator.
	ErrTimeout = errors.New("no progress")
)

// ErrCorrupt is understudy.ErrCorrupt ("archive corrupt"): an object does
// not hold what it should (an encrypted object that does not decrypt and
// authenticate, a truncated one).
var ErrCorrupt = understudy.ErrCorrupt

// Error is the error of an operation on a store: the operation, where, and
// why.
type Error struct {
	// Op is the operation: "put", "put-if-absent", "replace-if", "get",
	// "stat", "list" or "delete".
	Op string
	// Where is the object's location as a user would write it:
	// s3://bucket/prefix/name, or a file's path.
	Where string
	// Err is the cause: one of the sentinel errors above, or the error of
	// the file system or the network.
	Err error
}

func (e *Error) Error() string { return e.Op + " " + e.Where + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// IsNotExist tells whether err says that an object does not exist.
func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) }

// IsRetryable tells whether the same call may succeed if made again,
// from the cause of err: the network failed (connection refused or reset,
// a truncated reply, a network timeout), the store said it was unavailable
// (ErrUnavailable), or the Timeout decorator gave up waiting (ErrTimeout).
// The caller's own cancellation, the sentinel errors of an object (ErrNotExist,
// ErrExists, ErrPrecondition, ErrRange, ErrCorrupt, keys), a refused TLS
// certificate, refused credentials and every local file system error are
// permanent.
func IsRetryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrNotExist), errors.Is(err, ErrExists), errors.Is(err, ErrPrecondition),
		errors.Is(err, ErrRange), errors.Is(err, ErrInvalidName), errors.Is(err, ErrCorrupt),
		errors.Is(err, ErrWrongKey), errors.Is(err, ErrNoKey),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrUnavailable):
		return true
	}
	if de := (*DataError)(nil); errors.As(err, &de) {
		return IsRetryable(de.Err) // the caller's data, not the store
	}
	// Inside an HTTP client's error, the cause: a connection closed
	// before the reply (io.EOF) is the network's doing.
	var ue *url.Error
	if errors.As(err, &ue) && (errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, io.ErrUnexpectedEOF)) {
		return true
	}
	var (
		dnsErr     *net.DNSError
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		verify     *tls.CertificateVerificationError
		recordHdr  tls.RecordHeaderError
		tlsAlert   tls.AlertError
		opErr      *net.OpError
		netErr     net.Error
		syscallErr syscall.Errno
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid),
		errors.As(err, &verify), errors.As(err, &recordHdr), errors.As(err, &tlsAlert):
		return false // TLS trouble is configuration, not weather
	case errors.Is(err, io.ErrUnexpectedEOF):
		return true // the connection ended in the middle of a reply
	case errors.As(err, &syscallErr):
		switch syscallErr {
		case syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
			syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN:
			return true
		}
		return false // a local file system error (ENOSPC, EACCES, EIO, …)
	case errors.As(err, &dnsErr):
		return !dnsErr.IsNotFound // no such host is a configuration error
	case errors.As(err, &opErr):
		return true // a connection failed or broke
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	}
	return false
}

// notSent tells whether err shows that a request never reached the store
// (the connection could not be made), so that a conditional write that
// failed with it was certainly not carried out.
func notSent(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// MaxNameLen bounds the length of a name in bytes; a segment (between
// slashes) is at most 255 bytes, what a file system allows in a file name.
const MaxNameLen = 1024

// ValidName checks a name: valid UTF-8 of at most MaxNameLen bytes,
// segments separated by single slashes, each segment at most 255 bytes,
// not empty, not starting with a dot (which also rules out "." and "..",
// and leaves dot files to the backends' own use), and no control
// characters or backslashes.
func ValidName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidName, name, why) }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxNameLen))
	case !utf8.ValidString(name):
		return bad("not UTF-8")
	}
	for _, seg := range strings.Split(name, "/") {
		switch {
		case seg == "":
			return bad("empty segment (leading, trailing or double slash)")
		case len(seg) > 255:
			return bad("a segment is longer than 255 bytes")
		case seg[0] == '.':
			return bad("a segment starts with a dot")
		}
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return bad("control character or backslash")
		}
	}
	return nil
}

// ValidPrefix checks a List prefix: empty, or a name that may end with a
// slash, or the beginning of one.
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	p := strings.TrimSuffix(prefix, "/")
	if err := ValidName(p); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

// Locator is implemented by the backends, and passed on by the decorators,
// to say where an object is in words a user recognizes:
// s3://bucket/prefix/name, or a file's path.
type Locator interface {
	Where(name string) string
}

// Where returns where b keeps the object name, or the name if b does not
// say.
func Where(b Backend, name string) string { return where(b, name) }

func where(b Backend, name string) string {
	if l, ok := b.(Locator); ok {
		return l.Where(name)
	}
	return name
}

// DataError is an error in reading the data given to Put: the caller's
// source failed or held fewer bytes than the size given. It is retryable
// only if its own cause is.
type DataError struct{ Err error }

func (e *DataError) Error() string { return "read the data: " + e.Err.Error() }

func (e *DataError) Unwrap() error { return e.Err }

// DataReader wraps the data of a Put of size bytes, for a backend: its
// read errors become *DataError, also data that ends before size.
func DataReader(r io.ReaderAt, size int64) io.ReaderAt { return dataReader{r, size} }

type dataReader struct {
	r    io.ReaderAt
	size int64
}

func (d dataReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.r.ReadAt(p, off)
	switch {
	case n < len(p) && off+int64(len(p)) <= d.size && (err == nil || err == io.EOF):
		return n, &DataError{fmt.Errorf("it ends at %d bytes, before its size %d", off+int64(n), d.size)}
	case err != nil && err != io.EOF:
		return n, &DataError{err}
	}
	return n, err
}
