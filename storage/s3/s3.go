// Package s3 is the storage backend of an S3-compatible object store
// (AWS S3, MinIO, Ceph RGW, R2, versitygw, …), on minio-go, which sends
// plain requests that such stores accept.
//
// An object is stored under the key prefix+name. Conditional writes use
// the standard headers: PutIfAbsent sends If-None-Match: * and ReplaceIf
// If-Match: "etag"; the store answers 412 when the condition does not
// hold. Conditional writes are single PUTs (up to 5 GiB), so that the
// condition applies to the whole object; other Puts larger than PartSize
// are multipart uploads, read in parallel from the caller's io.ReaderAt.
// minio-go's own retries are off: retries are the storage.Retry
// decorator's (see Open).
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/understudy-db/understudy/storage"
)

// Backend is an S3 bucket (or a prefix in it) used as a store.
type Backend struct {
	client *minio.Client
	core   minio.Core
	bucket string
	prefix string
	// PageSize is the number of names a List request asks for (1..1000;
	// default 1000, the most S3 returns).
	PageSize int
	// PartSize is the size of the parts of an unconditional Put larger
	// than it, uploaded as a multipart upload (default 16 MiB; S3 needs at
	// least 5 MiB).
	PartSize uint64
}

var _ storage.Backend = (*Backend)(nil)

// MaxSinglePut is the largest object a single PUT (and so a conditional
// write) may store on S3.
const MaxSinglePut = 5 << 30

// New connects to the bucket of s. It does not send a request: a wrong
// endpoint, key or bucket shows at the first operation.
func New(s storage.S3Settings) (*Backend, error) {
	host, secure, err := storage.ParseEndpoint(s.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint: %w", err)
	}
	if err := storage.CheckBucket(s.Bucket); err != nil {
		return nil, fmt.Errorf("s3 bucket: %w", err)
	}
	prefix, err := storage.NormalizePrefix(s.Prefix)
	if err != nil {
		return nil, fmt.Errorf("s3 prefix: %w", err)
	}
	if s.AccessKey == "" || s.SecretKey == "" {
		return nil, errors.New("s3: the access key and the secret key are both required")
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	if s.CAFile != "" {
		if !secure {
			return nil, fmt.Errorf("s3 ca_file %s: the endpoint does not use https", s.CAFile)
		}
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3 ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3 ca_file: no PEM certificate in %s", s.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	lookup := minio.BucketLookupAuto
	if s.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       secure,
		Region:       s.Region,
		BucketLookup: lookup,
		Transport:    tr,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return &Backend{client: c, core: minio.Core{Client: c}, bucket: s.Bucket, prefix: prefix, PageSize: 1000, PartSize: 16 << 20}, nil
}

// Open returns the store of a resolved storage block: the bucket inside
// the standard decorators (storage.Stack: retries, timeouts, a limit of
// concurrent operations). Objects are stored as they are given: wrap it in
// storage.NewEncrypted for those to be encrypted.
func Open(st *storage.Settings, log *slog.Logger) (storage.Backend, error) {
	b, err := New(st.S3)
	if err != nil {
		return nil, err
	}
	return storage.Stack(b, log), nil
}

// Where implements storage.Locator: s3://bucket/prefix/name.
func (b *Backend) Where(name string) string {
	return "s3://" + b.bucket + "/" + b.prefix + name
}

// Client returns the minio-go client, for tests and tools.
func (b *Backend) Client() *minio.Client { return b.client }

// Put implements storage.Backend.
func (b *Backend) Put(ctx context.Context, name string, r io.ReaderAt, size int64) (storage.Info, error) {
	return b.put(ctx, "put", name, r, size, minio.PutObjectOptions{})
}

// PutIfAbsent implements storage.Backend with If-None-Match: *.
func (b *Backend) PutIfAbsent(ctx context.Context, name string, r io.ReaderAt, size int64) (storage.Info, error) {
	o := minio.PutObjectOptions{DisableMultipart: true}
	o.SetMatchETagExcept("*")
	return b.put(ctx, "put-if-absent", name, r, size, o)
}

// ReplaceIf implements storage.Backend with If-Match.
func (b *Backend) ReplaceIf(ctx context.Context, name string, r io.ReaderAt, size int64, etag string) (storage.Info, error) {
	if etag == "" || etag == "*" {
		return storage.Info{}, b.fail("replace-if", name, fmt.Errorf("%w: no ETag given", storage.ErrPrecondition))
	}
	o := minio.PutObjectOptions{DisableMultipart: true}
	o.SetMatchETag(etag)
	return b.put(ctx, "replace-if", name, r, size, o)
}

func (b *Backend) put(ctx context.Context, op, name string, r io.ReaderAt, size int64, o minio.PutObjectOptions) (storage.Info, error) {
	if err := storage.ValidName(name); err != nil {
		return storage.Info{}, b.fail(op, name, err)
	}
	switch {
	case size < 0:
		return storage.Info{}, b.fail(op, name, fmt.Errorf("negative size %d", size))
	case o.DisableMultipart && size > MaxSinglePut:
		return storage.Info{}, b.fail(op, name, fmt.Errorf("a conditional write stores at most %d bytes (a single PUT), not %d", int64(MaxSinglePut), size))
	}
	o.ContentType = "application/octet-stream"
	o.PartSize = b.PartSize
	// A single PUT carries its body's MD5, which the server checks: bytes
	// damaged on the way are refused, not stored (the seekable body is
	// read twice, never buffered). Multipart uploads are left as they are:
	// minio-go would buffer each part to hash it.
	o.SendContentMd5 = o.DisableMultipart
	info, err := b.client.PutObject(ctx, b.bucket, b.prefix+name, io.NewSectionReader(storage.DataReader(r, size), 0, size), size, o)
	if err != nil {
		return storage.Info{}, b.fail(op, name, err)
	}
	return storage.Info{Name: name, Size: size, ETag: info.ETag, ModTime: info.LastModified}, nil
}

// Get implements storage.Backend with a ranged GET.
func (b *Backend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := storage.ValidName(name); err != nil {
		return nil, b.fail("get", name, err)
	}
	if off < 0 {
		return nil, b.fail("get", name, fmt.Errorf("%w: negative offset %d", storage.ErrRange, off))
	}
	if length == 0 {
		return b.empty(ctx, name, off)
	}
	var o minio.GetObjectOptions
	switch {
	case length > 0:
		o.SetRange(off, off+length-1)
	case off > 0:
		o.SetRange(off, 0)
	}
	rc, _, _, err := b.core.GetObject(ctx, b.bucket, b.prefix+name, o)
	if err != nil {
		err = b.fail("get", name, err)
		if errors.Is(err, storage.ErrRange) {
			// S3 refuses any range of an empty object, and one that
			// begins at the end: both read nothing here.
			return b.empty(ctx, name, off)
		}
		return nil, err
	}
	return &reader{rc: rc, b: b, name: name}, nil
}

// empty returns an empty reader if off is within the object (at most its
// size), ErrRange if not.
func (b *Backend) empty(ctx context.Context, name string, off int64) (io.ReadCloser, error) {
	info, err := b.Stat(ctx, name)
	if err != nil {
		return nil, &storage.Error{Op: "get", Where: b.Where(name), Err: errors.Unwrap(err)}
	}
	if off > info.Size {
		return nil, b.fail("get", name, fmt.Errorf("%w: offset %d, size %d", storage.ErrRange, off, info.Size))
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// reader is the body of a GET, its errors made storage errors.
type reader struct {
	rc   io.ReadCloser
	b    *Backend
	name string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err != nil && err != io.EOF {
		err = r.b.fail("get", r.name, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.rc.Close() }

// Stat implements storage.Backend with a HEAD request.
func (b *Backend) Stat(ctx context.Context, name string) (storage.Info, error) {
	if err := storage.ValidName(name); err != nil {
		return storage.Info{}, b.fail("stat", name, err)
	}
	oi, err := b.client.StatObject(ctx, b.bucket, b.prefix+name, minio.StatObjectOptions{})
	if err != nil {
		return storage.Info{}, b.fail("stat", name, err)
	}
	return storage.Info{Name: name, Size: oi.Size, ETag: oi.ETag, ModTime: oi.LastModified}, nil
}

// List implements storage.Backend with ListObjectsV2, PageSize names a
// request. Keys under the prefix that are not valid names (a "folder"
// object ending with a slash, say) are skipped.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if err := storage.ValidPrefix(prefix); err != nil {
		return b.fail("list", prefix, err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true, MaxKeys: b.PageSize}
	for oi := range b.client.ListObjects(lctx, b.bucket, o) {
		if oi.Err != nil {
			return b.fail("list", prefix, oi.Err)
		}
		name, ok := strings.CutPrefix(oi.Key, b.prefix)
		if !ok || storage.ValidName(name) != nil {
			continue
		}
		if err := fn(storage.Info{Name: name, Size: oi.Size, ETag: oi.ETag, ModTime: oi.LastModified}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Delete implements storage.Backend. S3 answers a DELETE of a missing
// object with success too.
func (b *Backend) Delete(ctx context.Context, name string) error {
	if err := storage.ValidName(name); err != nil {
		return b.fail("delete", name, err)
	}
	if err := b.client.RemoveObject(ctx, b.bucket, b.prefix+name, minio.RemoveObjectOptions{}); err != nil {
		return b.fail("delete", name, err)
	}
	return nil
}

// fail makes err a storage.Error, with the cause that the store's answer
// means.
func (b *Backend) fail(op, name string, err error) error {
	var se *storage.Error
	if errors.As(err, &se) {
		return err
	}
	var er minio.ErrorResponse
	var ue *url.Error
	switch {
	case errors.As(err, &er) && (er.StatusCode != 0 || er.Code != ""):
		err = b.cause(op, er)
	case errors.As(err, &ue) && strings.HasPrefix(ue.Err.Error(), "Connection closed by foreign host"):
		// minio-go replaces the transport's io.EOF, a connection closed
		// before the reply, with this text (api.go, Client.do): put the
		// cause back.
		err = fmt.Errorf("%s %s: connection closed before the reply: %w", ue.Op, ue.URL, io.ErrUnexpectedEOF)
	}
	return &storage.Error{Op: op, Where: b.Where(name), Err: err}
}

// cause maps an S3 error answer to the sentinel errors of storage.
func (b *Backend) cause(op string, er minio.ErrorResponse) error {
	desc := strings.TrimSpace(fmt.Sprintf("%d %s %s", er.StatusCode, er.Code, er.Message))
	switch {
	case er.Code == "NoSuchBucket":
		return fmt.Errorf("bucket %q does not exist (%s)", b.bucket, desc)
	case er.StatusCode == http.StatusNotFound || er.Code == "NoSuchKey" || er.Code == "NotFound":
		return fmt.Errorf("%w (%s)", storage.ErrNotExist, desc)
	case er.StatusCode == http.StatusPreconditionFailed || er.Code == "PreconditionFailed":
		if op == "put-if-absent" {
			return fmt.Errorf("%w (%s)", storage.ErrExists, desc)
		}
		return fmt.Errorf("%w (%s)", storage.ErrPrecondition, desc)
	case er.StatusCode == http.StatusRequestedRangeNotSatisfiable || er.Code == "InvalidRange":
		return fmt.Errorf("%w (%s)", storage.ErrRange, desc)
	case er.StatusCode == http.StatusConflict && er.Code == "ConditionalRequestConflict",
		er.StatusCode >= 500, er.StatusCode == http.StatusTooManyRequests, er.StatusCode == http.StatusRequestTimeout,
		er.Code == "SlowDown", er.Code == "RequestTimeout", er.Code == "InternalError", er.Code == "ServiceUnavailable":
		return fmt.Errorf("%w (%s)", storage.ErrUnavailable, desc)
	case er.StatusCode == http.StatusForbidden, er.Code == "AccessDenied", er.Code == "InvalidAccessKeyId", er.Code == "SignatureDoesNotMatch":
		return fmt.Errorf("access denied (%s; check storage.s3's keys and what they may do in the bucket)", desc)
	}
	return errors.New(desc)
}
