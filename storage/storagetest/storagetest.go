// Package storagetest is the conformance suite of storage backends: every
// implementation of storage.Backend, and every stack of decorators, runs
// Run against a real store and behaves the same. A backend plugs in with a
// function that returns a new, empty store for each test.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-db/understudy/storage"
)

// Options tunes the suite for a backend.
type Options struct {
	// Many is the number of objects of the listing test; default 1100,
	// more than one page of an S3 listing (1000 names).
	Many int
	// LargeSize is the size of the large object, written and read as a
	// stream; default 64 MiB.
	LargeSize int64
	// MaxHeap is how much the heap may grow while the large object is
	// written and read; default LargeSize/4.
	MaxHeap int64
	// StoredSize is the size an object of n bytes has in the store (Info.Size);
	// nil means n. An encrypting decorator stores more.
	StoredSize func(n int64) int64
}

// Run runs the suite. open returns a new, empty store for each test.
func Run(t *testing.T, open func(t *testing.T) storage.Backend, o Options) {
	if o.Many == 0 {
		o.Many = 1100
	}
	if o.LargeSize == 0 {
		o.LargeSize = 64 << 20
	}
	if o.MaxHeap == 0 {
		o.MaxHeap = o.LargeSize / 4
	}
	if o.StoredSize == nil {
		o.StoredSize = func(n int64) int64 { return n }
	}
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Backend, Options)
	}{
		{"PutGetStat", testPutGetStat},
		{"Overwrite", testOverwrite},
		{"Empty", testEmpty},
		{"Ranges", testRanges},
		{"NotExist", testNotExist},
		{"InvalidNames", testInvalidNames},
		{"ListPrefixes", testListPrefixes},
		{"ListMany", testListMany},
		{"ListStops", testListStops},
		{"Delete", testDelete},
		{"ShortData", testShortData},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"ReplaceIf", testReplaceIf},
		{"ReplaceIfCounter", testReplaceIfCounter},
		{"Large", testLarge},
		{"Canceled", testCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t), o) })
	}
}

// Put stores data as name, failing the test on error.
func Put(t testing.TB, b storage.Backend, name string, data []byte) storage.Info {
	t.Helper()
	info, err := b.Put(context.Background(), name, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
	return info
}

// Read reads a range of an object whole, failing the test on error.
func Read(t testing.TB, b storage.Backend, name string, off, length int64) []byte {
	t.Helper()
	data, err := ReadErr(b, name, off, length)
	if err != nil {
		t.Fatalf("get %s [%d, %d): %v", name, off, length, err)
	}
	return data
}

// ReadErr reads a range of an object whole.
func ReadErr(b storage.Backend, name string, off, length int64) ([]byte, error) {
	rc, err := b.Get(context.Background(), name, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func testPutGetStat(t *testing.T, b storage.Backend, o Options) {
	data := []byte("the quick brown fox jumps over the lazy dog")
	info := Put(t, b, "db1/binlog.000001", data)
	if size := o.StoredSize(int64(len(data))); info.Name != "db1/binlog.000001" || info.Size != size || info.ETag == "" {
		t.Fatalf("put returned %+v, want the name, size %d and an ETag", info, size)
	}
	if got := Read(t, b, "db1/binlog.000001", 0, -1); !bytes.Equal(got, data) {
		t.Fatalf("get = %q, want %q", got, data)
	}
	st, err := b.Stat(context.Background(), "db1/binlog.000001")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != info.Name || st.Size != info.Size || st.ETag != info.ETag || st.ModTime.IsZero() {
		t.Fatalf("stat = %+v, want %+v with a modification time", st, info)
	}
	if d := time.Since(st.ModTime); d < -time.Minute || d > time.Hour {
		t.Fatalf("stat's modification time %v is not about now", st.ModTime)
	}
	// Any UTF-8 the names allow.
	name := "db1/snapshots/20261122T151400Z/shop/ordres clients €.00000.tsv.zst"
	Put(t, b, name, []byte("x"))
	if got := Read(t, b, name, 0, -1); string(got) != "x" {
		t.Fatalf("get %q = %q", name, got)
	}
}

func testOverwrite(t *testing.T, b storage.Backend, _ Options) {
	first := Put(t, b, "lease", []byte("one"))
	second := Put(t, b, "lease", []byte("two"))
	if first.ETag == second.ETag {
		t.Fatalf("the ETag %q did not change when the object was replaced", first.ETag)
	}
	if got := Read(t, b, "lease", 0, -1); string(got) != "two" {
		t.Fatalf("get = %q, want two", got)
	}
}

func testEmpty(t *testing.T, b storage.Backend, o Options) {
	info := Put(t, b, "empty", nil)
	if info.Size != o.StoredSize(0) {
		t.Fatalf("size %d, want %d", info.Size, o.StoredSize(0))
	}
	for _, r := range [][2]int64{{0, -1}, {0, 0}, {0, 10}} {
		if got := Read(t, b, "empty", r[0], r[1]); len(got) != 0 {
			t.Fatalf("get %v = %q, want nothing", r, got)
		}
	}
	if _, err := ReadErr(b, "empty", 1, -1); !errors.Is(err, storage.ErrRange) {
		t.Fatalf("get at 1 of an empty object: %v, want ErrRange", err)
	}
}

func testRanges(t *testing.T, b storage.Backend, _ Options) {
	data := pattern(1, 200_000)
	Put(t, b, "r", data)
	n := int64(len(data))
	for _, r := range [][2]int64{
		{0, -1}, {0, 1}, {0, 65536}, {65535, 2}, {65536, 65536}, {1, n - 1}, {n - 1, -1}, {n - 1, 1},
		{n, -1}, {n, 5}, {100, 0}, {n - 10, 100}, {12345, 54321},
	} {
		want := data[r[0]:]
		if r[1] >= 0 && r[1] < int64(len(want)) {
			want = want[:r[1]]
		}
		if got := Read(t, b, "r", r[0], r[1]); !bytes.Equal(got, want) {
			t.Fatalf("get [%d, +%d): %d bytes, want %d", r[0], r[1], len(got), len(want))
		}
	}
	for _, off := range []int64{n + 1, n + 100_000} {
		_, err := ReadErr(b, "r", off, -1)
		if !errors.Is(err, storage.ErrRange) || storage.IsRetryable(err) {
			t.Fatalf("get at %d of %d bytes: %v, want ErrRange (permanent)", off, n, err)
		}
	}
}

func testNotExist(t *testing.T, b storage.Backend, _ Options) {
	ctx := context.Background()
	Put(t, b, "a/b", []byte("x"))
	for _, name := range []string{"nope", "a/nope", "a", "a/b/c"} {
		if _, err := b.Stat(ctx, name); !storage.IsNotExist(err) || storage.IsRetryable(err) {
			t.Fatalf("stat %s: %v, want ErrNotExist (permanent)", name, err)
		}
		if _, err := ReadErr(b, name, 0, -1); !storage.IsNotExist(err) {
			t.Fatalf("get %s: %v, want ErrNotExist", name, err)
		}
		if _, err := ReadErr(b, name, 1, 1); !storage.IsNotExist(err) {
			t.Fatalf("get %s [1, 2): %v, want ErrNotExist", name, err)
		}
		// A name below an object ("a/b/c" below "a/b") is not one a
		// store on a file system can write: only read it.
		if strings.HasPrefix(name, "a/b/") {
			continue
		}
		if _, err := b.ReplaceIf(ctx, name, strings.NewReader("y"), 1, "0123"); !storage.IsNotExist(err) {
			t.Fatalf("replace-if %s: %v, want ErrNotExist", name, err)
		}
	}
	if _, err := b.Stat(ctx, "nope"); err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("stat's error %q is not one line naming the object", err)
	}
}

func testInvalidNames(t *testing.T, b storage.Backend, _ Options) {
	ctx := context.Background()
	for _, name := range []string{"", "/a", "a/", "a//b", "../x", "a/../b", "./a", "a/.tmp-1", ".lock", "a\\b", "a\x00b", "a\nb", strings.Repeat("x", 256)} {
		r := strings.NewReader("x")
		_, perr := b.Put(ctx, name, r, 1)
		_, aerr := b.PutIfAbsent(ctx, name, r, 1)
		_, serr := b.Stat(ctx, name)
		_, gerr := b.Get(ctx, name, 0, -1)
		derr := b.Delete(ctx, name)
		for _, err := range []error{perr, aerr, serr, gerr, derr} {
			if !errors.Is(err, storage.ErrInvalidName) || storage.IsRetryable(err) {
				t.Fatalf("name %q: %v, want ErrInvalidName", name, err)
			}
		}
	}
	var names []string
	if err := b.List(ctx, "", func(i storage.Info) error { names = append(names, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Fatalf("invalid names stored objects: %q", names)
	}
}

// List returns the names (and infos) under prefix, failing the test on
// error.
func List(t testing.TB, b storage.Backend, prefix string) ([]string, []storage.Info) {
	t.Helper()
	var names []string
	var infos []storage.Info
	if err := b.List(context.Background(), prefix, func(i storage.Info) error {
		names = append(names, i.Name)
		infos = append(infos, i)
		return nil
	}); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return names, infos
}

func testListPrefixes(t *testing.T, b storage.Backend, _ Options) {
	all := []string{"a.b", "a/1", "a/2", "a/b/3", "a/b/c/4", "a0", "ab", "b", "bb/1"}
	for i, n := range []int{4, 7, 1, 0, 2, 8, 3, 6, 5} { // in no order
		Put(t, b, all[n], bytes.Repeat([]byte("x"), i+1))
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"a", []string{"a.b", "a/1", "a/2", "a/b/3", "a/b/c/4", "a0", "ab"}},
		{"a/", []string{"a/1", "a/2", "a/b/3", "a/b/c/4"}},
		{"a/b", []string{"a/b/3", "a/b/c/4"}},
		{"a/b/", []string{"a/b/3", "a/b/c/4"}},
		{"a/b/c/4", []string{"a/b/c/4"}},
		{"b", []string{"b", "bb/1"}},
		{"bb/", []string{"bb/1"}},
		{"c", nil},
		{"a/z/", nil},
	} {
		got, infos := List(t, b, c.prefix)
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Fatalf("list %q = %q, want %q (all of them, in byte order)", c.prefix, got, c.want)
		}
		for _, i := range infos {
			st, err := b.Stat(context.Background(), i.Name)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size != i.Size || st.ETag != i.ETag {
				t.Fatalf("list's %+v differs from stat's %+v", i, st)
			}
		}
	}
}

func testListMany(t *testing.T, b storage.Backend, o Options) {
	var want []string
	for i := range o.Many {
		want = append(want, fmt.Sprintf("many/%06d", i))
	}
	parallel(t, 8, len(want), func(i int) error {
		_, err := b.Put(context.Background(), want[i], strings.NewReader(want[i]), int64(len(want[i])))
		return err
	})
	Put(t, b, "manz", []byte("after"))
	got, infos := List(t, b, "many/")
	if len(got) != len(want) || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("list found %d names, want %d in order", len(got), len(want))
	}
	for _, i := range infos {
		if want := o.StoredSize(int64(len(i.Name))); i.Size != want {
			t.Fatalf("%s: size %d, want %d", i.Name, i.Size, want)
		}
	}
	if all, _ := List(t, b, ""); len(all) != o.Many+1 || all[len(all)-1] != "manz" {
		t.Fatalf("list of everything: %d names, want %d ending with manz", len(all), o.Many+1)
	}
}

func testListStops(t *testing.T, b storage.Backend, _ Options) {
	for i := range 5 {
		Put(t, b, fmt.Sprintf("s/%d", i), []byte("x"))
	}
	stop := errors.New("enough")
	n := 0
	err := b.List(context.Background(), "s/", func(storage.Info) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Fatalf("list returned %v after %d calls, want fn's error as it is after 2", err, n)
	}
}

func testDelete(t *testing.T, b storage.Backend, _ Options) {
	ctx := context.Background()
	Put(t, b, "d/1", []byte("x"))
	Put(t, b, "d/2", []byte("y"))
	if err := b.Delete(ctx, "d/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "d/1"); !storage.IsNotExist(err) {
		t.Fatalf("stat after delete: %v, want ErrNotExist", err)
	}
	if names, _ := List(t, b, "d/"); strings.Join(names, " ") != "d/2" {
		t.Fatalf("list after delete = %q", names)
	}
	for _, name := range []string{"d/1", "nope", "d"} {
		if err := b.Delete(ctx, name); err != nil {
			t.Fatalf("delete of missing %s: %v, want nil", name, err)
		}
	}
	if got := Read(t, b, "d/2", 0, -1); string(got) != "y" {
		t.Fatalf("d/2 = %q", got)
	}
	// A deleted name can be created again, also if absent.
	if _, err := b.PutIfAbsent(ctx, "d/1", strings.NewReader("z"), 1); err != nil {
		t.Fatal(err)
	}
}

// shortReader holds fewer bytes than the size given to Put.
type shortReader struct{ n int64 }

func (r shortReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.n {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.n-off))
	clear(p[:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func testShortData(t *testing.T, b storage.Backend, _ Options) {
	ctx := context.Background()
	if _, err := b.Put(ctx, "short", shortReader{100}, 200); err == nil {
		t.Fatal("put of 100 bytes as 200 succeeded")
	}
	if _, err := b.PutIfAbsent(ctx, "short", shortReader{100}, 200); err == nil {
		t.Fatal("put-if-absent of 100 bytes as 200 succeeded")
	}
	if _, err := b.Stat(ctx, "short"); !storage.IsNotExist(err) {
		t.Fatalf("a failed put left an object: %v", err)
	}
	Put(t, b, "short", []byte("whole"))
	if _, err := b.Put(ctx, "short", shortReader{1}, 2); err == nil {
		t.Fatal("put of 1 byte as 2 succeeded")
	}
	if got := Read(t, b, "short", 0, -1); string(got) != "whole" {
		t.Fatalf("a failed put changed the object: %q", got)
	}
	if names, _ := List(t, b, ""); strings.Join(names, " ") != "short" {
		t.Fatalf("failed puts left %q", names)
	}
}

func testPutIfAbsent(t *testing.T, b storage.Backend, o Options) {
	ctx := context.Background()
	info, err := b.PutIfAbsent(ctx, "manifest.000001", strings.NewReader("first"), 5)
	if err != nil {
		t.Fatal(err)
	}
	if info.ETag == "" || info.Size != o.StoredSize(5) {
		t.Fatalf("put-if-absent returned %+v", info)
	}
	_, err = b.PutIfAbsent(ctx, "manifest.000001", strings.NewReader("second"), 6)
	if !errors.Is(err, storage.ErrExists) || storage.IsRetryable(err) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("second put-if-absent: %v, want ErrExists (permanent, one line)", err)
	}
	if got := Read(t, b, "manifest.000001", 0, -1); string(got) != "first" {
		t.Fatalf("content %q, want first", got)
	}
	if st, _ := b.Stat(ctx, "manifest.000001"); st.ETag != info.ETag {
		t.Fatalf("the ETag changed from %s to %s", info.ETag, st.ETag)
	}
}

// testPutIfAbsentRace: of concurrent creators of one name, exactly one
// wins, and the object is the winner's.
func testPutIfAbsentRace(t *testing.T, b storage.Backend, _ Options) {
	const creators, rounds = 8, 10
	for round := range rounds {
		name := fmt.Sprintf("lease/%d", round)
		var wins atomic.Int32
		winner := make(chan string, creators)
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, creators)
		for c := range creators {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf("holder %d of round %d", c, round)
				<-start
				_, err := b.PutIfAbsent(context.Background(), name, strings.NewReader(body), int64(len(body)))
				switch {
				case err == nil:
					wins.Add(1)
					winner <- body
				case !errors.Is(err, storage.ErrExists):
					errs <- err
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d of %d concurrent put-if-absent succeeded, want exactly 1", round, n, creators)
		}
		if got, want := string(Read(t, b, name, 0, -1)), <-winner; got != want {
			t.Fatalf("round %d: object %q, want the winner's %q", round, got, want)
		}
	}
}

func testReplaceIf(t *testing.T, b storage.Backend, _ Options) {
	ctx := context.Background()
	v1 := Put(t, b, "lease", []byte("holder a, expires 10"))
	v2, err := b.ReplaceIf(ctx, "lease", strings.NewReader("holder a, expires 20"), 20, v1.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if v2.ETag == "" || v2.ETag == v1.ETag {
		t.Fatalf("replace-if returned ETag %q after %q", v2.ETag, v1.ETag)
	}
	// A stale ETag: the object changed since.
	_, err = b.ReplaceIf(ctx, "lease", strings.NewReader("holder b, expires 30"), 20, v1.ETag)
	if !errors.Is(err, storage.ErrPrecondition) || storage.IsRetryable(err) {
		t.Fatalf("replace-if with a stale ETag: %v, want ErrPrecondition (permanent)", err)
	}
	if got := Read(t, b, "lease", 0, -1); string(got) != "holder a, expires 20" {
		t.Fatalf("a failed replace-if changed the object to %q", got)
	}
	// The same content again still makes a new version.
	v3, err := b.ReplaceIf(ctx, "lease", strings.NewReader("holder a, expires 20"), 20, v2.ETag)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReplaceIf(ctx, "lease", strings.NewReader("x"), 1, "not-an-etag"); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("replace-if with a made-up ETag: %v, want ErrPrecondition", err)
	}
	if st, _ := b.Stat(ctx, "lease"); st.ETag != v3.ETag {
		t.Fatalf("stat's ETag %q, want replace-if's %q", st.ETag, v3.ETag)
	}
}

// testReplaceIfCounter: goroutines increment a counter by read, then
// ReplaceIf with the ETag read, again on ErrPrecondition: no increment is
// lost, so every ReplaceIf that succeeded saw the version it replaced.
func testReplaceIfCounter(t *testing.T, b storage.Backend, _ Options) {
	const workers, each = 4, 15
	ctx := context.Background()
	Put(t, b, "counter", []byte("0"))
	var conflicts atomic.Int32
	parallel(t, workers, workers, func(int) error {
		for range each {
			for {
				st, err := b.Stat(ctx, "counter")
				if err != nil {
					return err
				}
				data, err := ReadErr(b, "counter", 0, -1)
				if err != nil {
					return err
				}
				// The ETag must be that of the bytes read: read again
				// if the object changed in between.
				if st2, err := b.Stat(ctx, "counter"); err != nil {
					return err
				} else if st2.ETag != st.ETag {
					conflicts.Add(1)
					continue
				}
				var n int
				fmt.Sscan(string(data), &n)
				next := fmt.Sprint(n + 1)
				_, err = b.ReplaceIf(ctx, "counter", strings.NewReader(next), int64(len(next)), st.ETag)
				if errors.Is(err, storage.ErrPrecondition) {
					conflicts.Add(1)
					continue
				}
				if err != nil {
					return err
				}
				break
			}
		}
		return nil
	})
	if got, want := string(Read(t, b, "counter", 0, -1)), fmt.Sprint(workers*each); got != want {
		t.Fatalf("counter = %s after %d increments (%d conflicts): an increment was lost", got, workers*each, conflicts.Load())
	}
	t.Logf("%d increments, %d conflicts", workers*each, conflicts.Load())
}

func testLarge(t *testing.T, b storage.Backend, o Options) {
	src := Pattern{Seed: 7, Size: o.LargeSize}
	want := src.Sum()
	peak := watchHeap(t)
	began := time.Now()
	if _, err := b.Put(context.Background(), "large", src, src.Size); err != nil {
		t.Fatal(err)
	}
	put := time.Since(began)
	began = time.Now()
	rc, err := b.Get(context.Background(), "large", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	get := time.Since(began)
	grew := peak()
	if n != src.Size || !bytes.Equal(h.Sum(nil), want) {
		t.Fatalf("read back %d bytes, want %d with the same sha256", n, src.Size)
	}
	ranged := Read(t, b, "large", src.Size/2, 1<<20)
	if !bytes.Equal(ranged, src.Bytes(src.Size/2, 1<<20)) {
		t.Fatal("a range of the large object differs")
	}
	t.Logf("%d MiB: put %v, get %v, heap grew by at most %d MiB", src.Size>>20, put.Round(time.Millisecond), get.Round(time.Millisecond), grew>>20)
	if grew > o.MaxHeap {
		t.Fatalf("the heap grew by %d MiB while %d MiB were written and read, more than %d MiB: the object was held in memory", grew>>20, src.Size>>20, o.MaxHeap>>20)
	}
}

func testCanceled(t *testing.T, b storage.Backend, _ Options) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.Put(ctx, "c", Pattern{Seed: 1, Size: 4 << 20}, 4<<20)
	if err == nil || storage.IsRetryable(err) {
		t.Fatalf("put with a cancelled context: %v, want a permanent error", err)
	}
	if _, err := b.Stat(context.Background(), "c"); !storage.IsNotExist(err) {
		t.Fatalf("a cancelled put left an object: %v", err)
	}
	if _, err := b.Stat(ctx, "c"); err == nil || storage.IsRetryable(err) {
		t.Fatalf("stat with a cancelled context: %v, want a permanent error", err)
	}
}

// parallel runs fn(0..n-1) on workers goroutines, failing the test on the
// first error.
func parallel(t testing.TB, workers, n int, fn func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// watchHeap samples the heap until the returned function is called, which
// returns how much it grew at most above where it was at the start.
func watchHeap(t testing.TB) func() int64 {
	// Collect often, so that the heap in use is about the live heap and
	// not garbage the collector has not come to yet.
	old := debug.SetGCPercent(10)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapInuse)
	var peak atomic.Int64
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if d := int64(ms.HeapInuse) - base; d > peak.Load() {
				peak.Store(d)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-stopped
		debug.SetGCPercent(old)
		return peak.Load()
	}
}

// Pattern is Size pseudo-random bytes made from Seed, readable at any
// offset without being held in memory.
type Pattern struct {
	Seed uint64
	Size int64
}

func (p Pattern) word(i int64) uint64 {
	// splitmix64
	z := p.Seed + uint64(i)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// ReadAt implements io.ReaderAt.
func (p Pattern) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.Size {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.Size-off))
	var w [8]byte
	for i := 0; i < n; {
		o := off + int64(i)
		binary.LittleEndian.PutUint64(w[:], p.word(o/8))
		i += copy(b[i:n], w[o%8:])
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

// Bytes returns length bytes from off.
func (p Pattern) Bytes(off, length int64) []byte {
	b := make([]byte, min(length, p.Size-off))
	p.ReadAt(b, off)
	return b
}

// Sum returns the sha256 of the whole pattern.
func (p Pattern) Sum() []byte {
	h := sha256.New()
	io.Copy(h, io.NewSectionReader(p, 0, p.Size))
	return h.Sum(nil)
}

// pattern returns n bytes of Pattern{seed}.
func pattern(seed uint64, n int64) []byte { return Pattern{Seed: seed, Size: n}.Bytes(0, n) }
