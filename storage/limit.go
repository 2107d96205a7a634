package storage

import (
	"context"
	"io"
	"sync"
)

// Limit is a decorator that lets at most N operations run at once; the
// others wait for a slot (or for their context to end). A Get holds its
// slot until its reader is closed, a List until it returns.
type Limit struct {
	next Backend
	sem  chan struct{}
}

var _ Backend = (*Limit)(nil)

// DefaultConnections is the number of operations Stack lets run at once.
const DefaultConnections = 8

// NewLimit wraps b so that at most n operations run at once (n < 1: 1).
func NewLimit(b Backend, n int) *Limit {
	return &Limit{next: b, sem: make(chan struct{}, max(n, 1))}
}

func (l *Limit) acquire(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Limit) release() { <-l.sem }

// Put implements Backend.
func (l *Limit) Put(ctx context.Context, name string, r io.ReaderAt, size int64) (Info, error) {
	if err := l.acquire(ctx); err != nil {
		return Info{}, &Error{Op: "put", Where: where(l.next, name), Err: err}
	}
	defer l.release()
	return l.next.Put(ctx, name, r, size)
}

// PutIfAbsent implements Backend.
func (l *Limit) PutIfAbsent(ctx context.Context, name string, r io.ReaderAt, size int64) (Info, error) {
	if err := l.acquire(ctx); err != nil {
		return Info{}, &Error{Op: "put-if-absent", Where: where(l.next, name), Err: err}
	}
	defer l.release()
	return l.next.PutIfAbsent(ctx, name, r, size)
}

// ReplaceIf implements Backend.
func (l *Limit) ReplaceIf(ctx context.Context, name string, r io.ReaderAt, size int64, etag string) (Info, error) {
	if err := l.acquire(ctx); err != nil {
		return Info{}, &Error{Op: "replace-if", Where: where(l.next, name), Err: err}
	}
	defer l.release()
	return l.next.ReplaceIf(ctx, name, r, size, etag)
}

// Stat implements Backend.
func (l *Limit) Stat(ctx context.Context, name string) (Info, error) {
	if err := l.acquire(ctx); err != nil {
		return Info{}, &Error{Op: "stat", Where: where(l.next, name), Err: err}
	}
	defer l.release()
	return l.next.Stat(ctx, name)
}

// Delete implements Backend.
func (l *Limit) Delete(ctx context.Context, name string) error {
	if err := l.acquire(ctx); err != nil {
		return &Error{Op: "delete", Where: where(l.next, name), Err: err}
	}
	defer l.release()
	return l.next.Delete(ctx, name)
}

// List implements Backend.
func (l *Limit) List(ctx context.Context, prefix string, fn func(Info) error) error {
	if err := l.acquire(ctx); err != nil {
		return &Error{Op: "list", Where: where(l.next, prefix), Err: err}
	}
	defer l.release()
	return l.next.List(ctx, prefix, fn)
}

// Get implements Backend.
func (l *Limit) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, &Error{Op: "get", Where: where(l.next, name), Err: err}
	}
	rc, err := l.next.Get(ctx, name, off, length)
	if err != nil {
		l.release()
		return nil, err
	}
	return &limitedReader{ReadCloser: rc, release: l.release}, nil
}

type limitedReader struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (r *limitedReader) Close() error {
	err := r.ReadCloser.Close()
	r.once.Do(r.release)
	return err
}

// Where implements Locator.
func (l *Limit) Where(name string) string { return where(l.next, name) }
