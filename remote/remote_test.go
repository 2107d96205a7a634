package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/archiver"
	"github.com/understudy-db/understudy/internal/labtest"
	"github.com/understudy-db/understudy/internal/mariadbtest"
	"github.com/understudy-db/understudy/internal/s3test"
	"github.com/understudy-db/understudy/remote"
	"github.com/understudy-db/understudy/snapshot"
	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/local"
	"github.com/understudy-db/understudy/storage/s3"
)

// archiveSmall archives p into dir with 64 KiB files, so that a few
// thousand rows make several sealed files and an active one.
func archiveSmall(t *testing.T, p *mariadbtest.Server, dir string) (stop func()) {
	t.Helper()
	a := archiver.New(labtest.Source(p, "db", 9101), dir, mariadbtest.Logger(t, 0), nil)
	a.MaxBackoff = 300 * time.Millisecond
	a.MaxFileSize = 64 << 10
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		labtest.WaitArchived(t, dir, p)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("archiver: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func write(t *testing.T, p *mariadbtest.Server, from, n int, marker string) {
	t.Helper()
	for i := from; i < from+n; i += 50 {
		var vals []string
		for j := i; j < i+50 && j < from+n; j++ {
			vals = append(vals, fmt.Sprintf("(%d, '%s-%d-%s')", j, marker, j, strings.Repeat("x", 200)))
		}
		p.Exec(t, "INSERT INTO app.t VALUES "+strings.Join(vals, ","))
	}
}

// dirStore is a store in a new directory, root.
func dirStore(t *testing.T) (st remote.Store, root string) {
	t.Helper()
	root = t.TempDir()
	b, err := local.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return remote.Store{Plain: b}, root
}

// appPrimary starts a primary with the table app.t that write fills.
func appPrimary(t *testing.T, serverID uint32) *mariadbtest.Server {
	t.Helper()
	p := labtest.StartPrimary(t, mariadbtest.Options{ServerID: serverID, DomainID: 1})
	p.Exec(t, "CREATE DATABASE app")
	p.Exec(t, "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(300))")
	return p
}

// stores returns the stores the tests run on: a directory, and versitygw
// with encryption.
func stores(t *testing.T) map[string]func(t *testing.T) (remote.Store, func() []string) {
	return map[string]func(t *testing.T) (remote.Store, func() []string){
		"dir": func(t *testing.T) (remote.Store, func() []string) {
			st, root := dirStore(t)
			return st, func() []string { return files(t, root) }
		},
		"s3+age": func(t *testing.T) (remote.Store, func() []string) {
			srv := s3test.Start(t, s3test.Options{})
			b, err := s3.New(srv.Settings("site/"))
			if err != nil {
				t.Fatal(err)
			}
			kd := t.TempDir()
			if _, err := storage.GenerateKeys(kd, time.Now()); err != nil {
				t.Fatal(err)
			}
			keys, err := storage.LoadKeys(filepath.Join(kd, storage.RecipientsFileName), filepath.Join(kd, storage.IdentityFileName))
			if err != nil {
				t.Fatal(err)
			}
			st := storage.Stack(b, mariadbtest.Logger(t, 0))
			// Objects over 8 KiB are written as objects over 5 GiB are:
			// with Put, not PutIfAbsent.
			return remote.Store{Plain: st, Enc: storage.NewEncrypted(st, keys), MaxConditional: 8 << 10}, func() []string { return files(t, filepath.Join(srv.Root, srv.Bucket)) }
		},
	}
}

// files lists every regular file under root.
func files(t *testing.T, root string) []string {
	var out []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func waitShipped(t *testing.T, sh *remote.Shipper, dir string) {
	t.Helper()
	mariadbtest.Eventually(t, "the store holding the local archive", 60*time.Second, func() bool {
		a, err := archive.Open(dir)
		st := sh.Status()
		return err == nil && st.Behind == 0 && st.Position.Equal(a.Position())
	})
}

// sameArchive checks that dir2 (read back from the store) holds exactly
// the files of dir: every sealed file, the active file and their indexes.
func sameArchive(t *testing.T, dir, dir2 string) {
	t.Helper()
	a, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := archive.Open(dir2)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Position().Equal(b.Position()) || len(a.Files()) != len(b.Files()) {
		t.Fatalf("read back from the store: %d files at %s; the local archive: %d files at %s", len(b.Files()), b.Position(), len(a.Files()), a.Position())
	}
	for _, fi := range a.Files() {
		for _, name := range []string{fi.Name, archive.IndexName(fi.Name)} {
			x, err1 := os.ReadFile(filepath.Join(dir, name))
			y, err2 := os.ReadFile(filepath.Join(dir2, name))
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: %v %v", name, err1, err2)
			}
			if !fi.Sealed {
				x = x[:min(len(x), int(fi.Size))]
				if name != fi.Name {
					x = x[:min(len(x), int(fi.Transactions)*archive.RecordSize)]
				}
			}
			if !bytes.Equal(x, y) {
				t.Fatalf("%s read back from the store differs from the local one (%d and %d bytes)", name, len(y), len(x))
			}
		}
	}
	rep, err := archive.Verify(b)
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify of the archive read back: %v %+v", err, rep.Problems)
	}
}

// TestShipAndReadBack: the shipper uploads sealed files, the active file's
// new bytes and snapshots as the archive grows; what is read back from the
// store alone is the local archive byte for byte; Verify re-reads every
// object; a marker written to the primary never appears in an encrypted
// store; a damaged object is found by Verify and refused by a read.
func TestShipAndReadBack(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			st, stored := open(t)
			p := appPrimary(t, 1)
			const marker = "PLAINTEXT-MARKER-7f3a"
			dir := t.TempDir()
			stopArchive := archiveSmall(t, p, dir)
			write(t, p, 0, 600, marker)
			labtest.WaitArchived(t, dir, p)
			labtest.TakeSnapshot(t, p, "db", filepath.Join(dir, "snapshots"), 200)

			sh := &remote.Shipper{Source: "db", Dir: dir, SnapshotRoot: filepath.Join(dir, "snapshots"), Store: st, Interval: 100 * time.Millisecond,
				Writer: "w1", Log: mariadbtest.Logger(t, 0), SegmentMax: 16 << 10}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sh.Run(ctx) }()
			// More writes while it ships: the active file is shipped as it
			// grows, files are sealed and committed.
			write(t, p, 600, 610, marker)
			labtest.WaitArchived(t, dir, p)
			waitShipped(t, sh, dir)
			mariadbtest.Eventually(t, "the snapshot in the store", 30*time.Second, func() bool {
				l, err := remote.ListSnapshots(context.Background(), st, "db")
				return err == nil && len(l) == 1
			})
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("shipper: %v", err)
			}
			stopArchive()
			if err := sh.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}

			v, err := remote.OpenView(context.Background(), st, "db")
			if err != nil {
				t.Fatal(err)
			}
			if a, err := archive.Open(dir); err == nil {
				for _, f := range a.Files() {
					t.Logf("local %s sealed=%v size=%d txs=%d", f.Name, f.Sealed, f.Size, f.Transactions)
				}
			}
			if len(v.Man.Files) < 3 || v.Tip.Seq == 0 {
				t.Fatalf("the store holds %d sealed files and tip %d; want several and an active file", len(v.Man.Files), v.Tip.Seq)
			}
			back := t.TempDir()
			if err := v.Materialize(context.Background(), back, nil); err != nil {
				t.Fatal(err)
			}
			sameArchive(t, dir, back)
			snaps, err := remote.ListSnapshots(context.Background(), st, "db")
			if err != nil {
				t.Fatal(err)
			}
			sroot := filepath.Join(back, "snapshots")
			if err := remote.MaterializeSnapshots(context.Background(), st, "db", sroot, snaps); err != nil {
				t.Fatal(err)
			}
			if err := remote.FetchSnapshot(context.Background(), st, "db", filepath.Join(sroot, snaps[0].ID), snaps[0]); err != nil {
				t.Fatal(err)
			}
			l, err := snapshot.List(sroot)
			if err != nil || len(l) != 1 {
				t.Fatalf("snapshots read back: %v %v", l, err)
			}
			if p := snapshot.VerifyFiles(l[0].Dir, l[0].Manifest); len(p) > 0 {
				t.Fatalf("snapshot read back: %v", p)
			}
			rep, err := remote.Verify(context.Background(), st, "db", true)
			if err != nil || len(rep.Problems) > 0 || rep.Objects == 0 {
				t.Fatalf("verify: %v %+v", err, rep)
			}
			t.Logf("store: %d sealed files, tip %s at %d bytes, %d objects verified (%d bytes)", len(v.Man.Files), v.Tip.File, v.Tip.Size, rep.Objects, rep.Bytes)

			paths := stored()
			if st.Enc != nil {
				for _, path := range paths {
					b, _ := os.ReadFile(path)
					if bytes.Contains(b, []byte(marker)) {
						t.Fatalf("the marker is in plaintext in the store: %s", path)
					}
				}
			}
			// A flipped byte in a stored segment: Verify names it; a read
			// refuses it (ErrCorrupt), and nothing takes the file's name.
			var seg string
			for _, path := range paths {
				if strings.Contains(path, v.Man.Files[0].Name+".") && strings.HasSuffix(path, ".zst") {
					seg = path
				}
			}
			if seg == "" {
				t.Fatalf("no stored segment of %s in %v", v.Man.Files[0].Name, paths)
			}
			mariadbtest.FlipByte(t, seg, 300)
			rep, err = remote.Verify(context.Background(), st, "db", true)
			if err != nil || len(rep.Problems) == 0 {
				t.Fatalf("verify after a flipped byte: %v %+v", err, rep)
			}
			t.Logf("verify: %s", rep.Problems[0])
			fresh := t.TempDir()
			err = v.Materialize(context.Background(), fresh, nil)
			if !errors.Is(err, understudy.ErrCorrupt) {
				t.Fatalf("reading a damaged object: %v, want ErrCorrupt", err)
			}
			if _, err := os.Stat(filepath.Join(fresh, v.Man.Files[0].Name)); !os.IsNotExist(err) {
				t.Fatalf("the damaged file was written: %v", err)
			}
		})
	}
}

// TestShipResumes: shippers cut off in the middle of their uploads (as
// by a kill -9: their context ends at random moments), each followed by a
// new one, leave the store holding the local archive exactly: no segment
// missing, none doubled, and no garbage once the last one has run.
func TestShipResumes(t *testing.T) {
	st, root := dirStore(t)
	p := appPrimary(t, 1)
	dir := t.TempDir()
	stopArchive := archiveSmall(t, p, dir)
	next := 0
	for round := range 12 {
		write(t, p, next, 150, "r")
		next += 150
		sh := &remote.Shipper{Source: "db", Dir: dir, Store: st, Interval: 20 * time.Millisecond,
			Writer: fmt.Sprintf("w%02d", round), Log: mariadbtest.Logger(t, 0), SegmentMax: 8 << 10, Grace: -1}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(5+round*13%60)*time.Millisecond)
		sh.Run(ctx)
		cancel()
	}
	labtest.WaitArchived(t, dir, p)
	stopArchive()
	sh := &remote.Shipper{Source: "db", Dir: dir, Store: st, Writer: "last", Log: mariadbtest.Logger(t, 0), SegmentMax: 8 << 10, Grace: -1}
	if err := sh.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := remote.OpenView(context.Background(), st, "db")
	if err != nil {
		t.Fatal(err)
	}
	back := t.TempDir()
	if err := v.Materialize(context.Background(), back, nil); err != nil {
		t.Fatal(err)
	}
	sameArchive(t, dir, back)
	// Every stored segment is one a commit point names.
	named := map[string]bool{}
	for _, f := range v.Man.Files {
		for _, g := range f.Segments {
			named[g.Name] = true
		}
	}
	for _, g := range v.Tip.Segments {
		named[g.Name] = true
	}
	for _, path := range files(t, root) {
		rel, _ := filepath.Rel(root, path)
		if strings.HasSuffix(rel, ".zst") && !named[filepath.ToSlash(rel)] {
			t.Errorf("garbage left in the store: %s", rel)
		}
	}
	t.Logf("%d sealed files, %d segments named", len(v.Man.Files), len(named))
}

// TestShipStoreDown: while the store is down, archiving goes on, Status
// shows the error and the lag growing; once it is back, the uploads catch
// up by themselves.
func TestShipStoreDown(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	b, err := s3.New(srv.Settings("site/"))
	if err != nil {
		t.Fatal(err)
	}
	stack := storage.NewTimeout(b, 2*time.Second) // no retries: each cycle fails fast
	st := remote.Store{Plain: stack}
	p := appPrimary(t, 1)
	dir := t.TempDir()
	archiveSmall(t, p, dir)
	sh := &remote.Shipper{Source: "db", Dir: dir, Store: st, Interval: 100 * time.Millisecond, Writer: "w", Log: mariadbtest.Logger(t, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sh.Run(ctx)
	write(t, p, 0, 100, "a")
	labtest.WaitArchived(t, dir, p)
	waitShipped(t, sh, dir)

	srv.Kill(t)
	write(t, p, 100, 400, "b")
	labtest.WaitArchived(t, dir, p)
	mariadbtest.Eventually(t, "the error and the lag in the status", 30*time.Second, func() bool {
		s := sh.Status()
		return s.LastError != "" && s.Behind > 0 && s.Lag(time.Now()) > time.Second
	})
	s := sh.Status()
	t.Logf("store down: behind %d bytes for %s: %s", s.Behind, s.Lag(time.Now()).Round(time.Millisecond), s.LastError)
	srv.Restart(t)
	waitShipped(t, sh, dir)
	// The error is cleared by the cycle that succeeded, as it ends.
	mariadbtest.Eventually(t, "the error cleared", 10*time.Second, func() bool { return sh.Status().LastError == "" })
	v, err := remote.OpenView(context.Background(), st, "db")
	if err != nil {
		t.Fatal(err)
	}
	back := t.TempDir()
	if err := v.Materialize(context.Background(), back, nil); err != nil {
		t.Fatal(err)
	}
	sameArchive(t, dir, back)
}

// TestShipRetention: what retention removes locally goes from the store
// too: pruned files leave the next manifest and their segments are
// deleted; a snapshot removed locally while the shipper watched is deleted
// from the store, and one the store holds from elsewhere stays.
func TestShipRetention(t *testing.T) {
	st, root := dirStore(t)
	p := appPrimary(t, 1)
	dir := t.TempDir()
	snaps := filepath.Join(dir, "snapshots")
	stopArchive := archiveSmall(t, p, dir)
	write(t, p, 0, 300, "a")
	labtest.TakeSnapshot(t, p, "db", snaps, 0)
	write(t, p, 300, 310, "b")
	time.Sleep(1100 * time.Millisecond) // snapshot IDs are times to the second
	labtest.TakeSnapshot(t, p, "db", snaps, 0)
	labtest.WaitArchived(t, dir, p)
	stopArchive()

	// A snapshot in the store from another host, never local here.
	other := t.TempDir()
	time.Sleep(1100 * time.Millisecond)
	m := labtest.TakeSnapshot(t, p, "db", other, 0)
	l, err := snapshot.List(other)
	if err != nil || len(l) != 1 {
		t.Fatal(l, err)
	}
	if _, err := remote.ShipSnapshot(context.Background(), st, "db", "elsewhere", l[0], nil); err != nil {
		t.Fatal(err)
	}

	ship := func() {
		t.Helper()
		sh := &remote.Shipper{Source: "db", Dir: dir, SnapshotRoot: snaps, Store: st, Interval: 50 * time.Millisecond, Writer: "w", Log: mariadbtest.Logger(t, 0), Grace: -1}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sh.Run(ctx) }()
		waitShipped(t, sh, dir)
		mariadbtest.Eventually(t, "the snapshots shipped", 30*time.Second, func() bool {
			local, _ := snapshot.List(snaps)
			r, err := remote.ListSnapshots(context.Background(), st, "db")
			return err == nil && len(r) == len(local)+1
		})
		// One snapshot removed locally while it watches.
		local, _ := snapshot.List(snaps)
		if err := snapshot.MarkRemoved(local[0].Dir); err != nil { // as retention does with a store
			t.Fatal(err)
		}
		if ok, err := snapshot.Remove(local[0].Dir); !ok || err != nil {
			t.Fatal(ok, err)
		}
		mariadbtest.Eventually(t, "the removed snapshot gone from the store", 30*time.Second, func() bool {
			r, err := remote.ListSnapshots(context.Background(), st, "db")
			return err == nil && len(r) == len(local)
		})
		// One removed by hand, not by retention (to free the disk): the
		// store keeps it.
		if err := os.RemoveAll(local[1].Dir); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Second) // more than a pass of the snapshot loop
		r, err := remote.ListSnapshots(context.Background(), st, "db")
		if err != nil || len(r) != len(local) {
			t.Fatalf("after a snapshot was removed by hand: %d in the store (%v), want %d", len(r), err, len(local))
		}
		cancel()
		<-done
	}
	ship()
	r, _ := remote.ListSnapshots(context.Background(), st, "db")
	ids := []string{}
	for _, s := range r {
		ids = append(ids, s.ID)
	}
	if !strings.Contains(strings.Join(ids, " "), m.ID) {
		t.Fatalf("the other host's snapshot %s was deleted from the store: %v", m.ID, ids)
	}

	// Retention prunes the two oldest files locally.
	w, err := archive.OpenWriter(dir, archive.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := archive.Open(dir)
	pruned, err := w.Prune(a.Files()[2].Name)
	w.Close()
	if err != nil || len(pruned) != 2 {
		t.Fatalf("prune: %v %v", pruned, err)
	}
	sh := &remote.Shipper{Source: "db", Dir: dir, Store: st, Writer: "w2", Log: mariadbtest.Logger(t, 0), Grace: -1}
	if err := sh.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := remote.OpenView(context.Background(), st, "db")
	if err != nil {
		t.Fatal(err)
	}
	if v.Man.PrunedThrough != 2 || v.Man.Files[0].Name != a.Files()[2].Name {
		t.Fatalf("the store's manifest: pruned through %d, first file %s", v.Man.PrunedThrough, v.Man.Files[0].Name)
	}
	for _, f := range files(t, root) {
		for _, gone := range pruned {
			if strings.Contains(f, "/"+gone.Name+".") {
				t.Errorf("a segment of pruned %s is still in the store: %s", gone.Name, f)
			}
		}
	}
	back := t.TempDir()
	if err := v.Materialize(context.Background(), back, nil); err != nil {
		t.Fatal(err)
	}
	sameArchive(t, dir, back)
}

// TestShipDiverged: a local archive that does not continue what the store
// holds of the source (another primary's, an archive directory replaced)
// is refused, with ErrDiverged, and the store is left as it was.
func TestShipDiverged(t *testing.T) {
	st, root := dirStore(t)
	var dirs []string
	for i := range 2 {
		p := appPrimary(t, uint32(i+1))
		dir := t.TempDir()
		stop := archiveSmall(t, p, dir)
		write(t, p, i*10000, 300+i*50, "d")
		labtest.WaitArchived(t, dir, p)
		stop()
		dirs = append(dirs, dir)
	}
	if err := (&remote.Shipper{Source: "db", Dir: dirs[0], Store: st, Writer: "a"}).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := files(t, root)
	err := (&remote.Shipper{Source: "db", Dir: dirs[1], Store: st, Writer: "b"}).Flush(context.Background())
	if !errors.Is(err, remote.ErrDiverged) {
		t.Fatalf("shipping another archive under the same source: %v, want ErrDiverged", err)
	}
	t.Log(err)
	if after := files(t, root); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("the store changed:\n%v\n%v", before, after)
	}
}

// TestShipSealWindow: the writer starts file N+1 as soon as N is sealed
// and records N in its manifest a moment later. A shipping cycle in that
// moment ships no tip for N+1 (which would drop N's tip before any
// manifest of the store holds N): the store keeps every file, and once N
// is recorded it ships N, then N+1.
func TestShipSealWindow(t *testing.T) {
	st, _ := dirStore(t)
	p := appPrimary(t, 1)
	dir := t.TempDir()
	stopArchive := archiveSmall(t, p, dir)
	write(t, p, 0, 400, "a")
	labtest.WaitArchived(t, dir, p)
	stopArchive()
	ship := func(writer string) *remote.View {
		t.Helper()
		sh := &remote.Shipper{Source: "db", Dir: dir, Store: st, Writer: writer, Log: mariadbtest.Logger(t, 0), SegmentMax: 8 << 10}
		if err := sh.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		v, err := remote.OpenView(context.Background(), st, "db")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ship("w1")
	stopArchive = archiveSmall(t, p, dir)
	write(t, p, 400, 400, "b")
	labtest.WaitArchived(t, dir, p)
	stopArchive()

	// The moment after the seal of the newest sealed file N: on disk,
	// not yet in the manifest.
	m, err := archive.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	full := m
	n := m.Files[len(m.Files)-1].Name
	m.Files = m.Files[:len(m.Files)-1]
	if err := archive.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	v := ship("w2")
	names := map[string]bool{v.Tip.File: true}
	for _, f := range v.Man.Files {
		names[f.Name] = true
	}
	last, _ := archive.FileNumber(v.Tip.File)
	for i := 1; i <= last; i++ {
		if !names[archive.FileName(i)] {
			t.Fatalf("the store lacks %s (tip %s, %d sealed files): a hole, %s being sealed", archive.FileName(i), v.Tip.File, len(v.Man.Files), n)
		}
	}
	if v.Tip.File == n || last > mustNumber(t, n) {
		t.Fatalf("the store's tip is %s while %s is not recorded: want the tip of before", v.Tip.File, n)
	}

	// N recorded: everything ships, and reads back whole.
	if err := archive.WriteManifest(dir, full); err != nil {
		t.Fatal(err)
	}
	ship("w3")
	back := t.TempDir()
	v, err = remote.OpenView(context.Background(), st, "db")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Materialize(context.Background(), back, nil); err != nil {
		t.Fatal(err)
	}
	sameArchive(t, dir, back)

	// A fetched copy damaged since (same size) is fetched again, not
	// trusted by its size.
	first := v.Man.Files[0]
	path := filepath.Join(back, first.Name)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := v.Fetch(context.Background(), back, []string{first.Name}); err != nil {
		t.Fatal(err)
	}
	if sum, err := archive.FileSHA256(path); err != nil || sum != first.SHA256 {
		t.Fatalf("%s after a fetch over a damaged copy: sha256 %s (%v), the manifest's %s", first.Name, sum, err, first.SHA256)
	}
}

func mustNumber(t *testing.T, name string) int {
	t.Helper()
	n, ok := archive.FileNumber(name)
	if !ok {
		t.Fatalf("%s is no archived file name", name)
	}
	return n
}

// TestShipDamagedSnapshot: a snapshot file whose bytes no longer match the
// snapshot's manifest is not shipped, and the snapshot is not committed in
// the store: the store must not hold a copy that a restore then refuses.
func TestShipDamagedSnapshot(t *testing.T) {
	st, _ := dirStore(t)
	p := appPrimary(t, 1)
	write(t, p, 0, 100, "a")
	root := t.TempDir()
	m := labtest.TakeSnapshot(t, p, "db", root, 0)
	l, err := snapshot.List(root)
	if err != nil || len(l) != 1 {
		t.Fatal(l, err)
	}
	var chunk string
	for path := range m.Files {
		if strings.HasSuffix(path, ".tsv.zst") {
			chunk = path
		}
	}
	full := filepath.Join(l[0].Dir, filepath.FromSlash(chunk))
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(full, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = remote.ShipSnapshot(context.Background(), st, "db", "w", l[0], nil)
	if !errors.Is(err, understudy.ErrCorrupt) || !strings.Contains(err.Error(), "is not shipped") || !strings.Contains(err.Error(), chunk) {
		t.Fatalf("shipping a damaged snapshot: %v", err)
	}
	if r, err := remote.ListSnapshots(context.Background(), st, "db"); err != nil || len(r) != 0 {
		t.Fatalf("snapshots in the store after the refusal: %v %v", r, err)
	}
}

// landedButFailed stores its first commit point (a tip) and then reports
// the PUT failed, as a timeout does after the server applied it.
type landedButFailed struct {
	storage.Backend
	mu     sync.Mutex
	failed bool
}

func (b *landedButFailed) PutIfAbsent(ctx context.Context, name string, r io.ReaderAt, size int64) (storage.Info, error) {
	info, err := b.Backend.PutIfAbsent(ctx, name, r, size)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil && !b.failed && strings.Contains(name, "/tip.") {
		b.failed = true
		return storage.Info{}, fmt.Errorf("put %s: %w", name, storage.ErrTimeout)
	}
	return info, err
}

// TestShipCommitLanded: a commit point reported failed that had landed
// takes its number; the next attempt at that number finds it taken, by
// this writer: shipping goes on (it stopped for good, as if another writer
// had taken over), and the store ends up with the whole archive.
func TestShipCommitLanded(t *testing.T) {
	st, _ := dirStore(t)
	lb := &landedButFailed{Backend: st.Plain}
	st.Plain = lb
	p := appPrimary(t, 1)
	dir := t.TempDir()
	stopArchive := archiveSmall(t, p, dir)
	sh := &remote.Shipper{Source: "db", Dir: dir, Store: st, Interval: 20 * time.Millisecond, Writer: "w1", Log: mariadbtest.Logger(t, 0), SegmentMax: 8 << 10}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	for i := range 6 {
		write(t, p, i*100, 100, "c")
		time.Sleep(100 * time.Millisecond)
	}
	labtest.WaitArchived(t, dir, p)
	stopArchive()
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the shipper stopped: %v", err)
	}
	if !lb.failed {
		t.Fatal("no commit point was reported failed")
	}
	if err := sh.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := remote.OpenView(context.Background(), st, "db")
	if err != nil {
		t.Fatal(err)
	}
	back := t.TempDir()
	if err := v.Materialize(context.Background(), back, nil); err != nil {
		t.Fatal(err)
	}
	sameArchive(t, dir, back)
}

// TestShipGrace: a restore from the store while the writer ships reads
// the head it opened; the tip segments that a merge replaces after that
// stay for the grace period, so the reader never finds a segment its
// commit point names missing.
func TestShipGrace(t *testing.T) {
	st, _ := dirStore(t)
	p := appPrimary(t, 1)
	dir := t.TempDir()
	stopArchive := archiveSmall(t, p, dir)
	defer stopArchive()
	sh := &remote.Shipper{Source: "db", Dir: dir, Store: st, Writer: "w", Log: mariadbtest.Logger(t, 0), SegmentMax: 8 << 10, Grace: time.Hour}
	named := func(v *remote.View) map[string]bool {
		names := map[string]bool{}
		for _, g := range v.Tip.Segments {
			names[g.Name] = true
		}
		for _, f := range v.Man.Files {
			for _, g := range f.Segments {
				names[g.Name] = true
			}
		}
		return names
	}
	// Shipments of one row each: past maxSegments, the tip's newest
	// segments are merged into one, and the head before names segments
	// the new one does not.
	var prev *remote.View
	for i := 0; i < 150; i++ {
		write(t, p, i, 1, "b")
		labtest.WaitArchived(t, dir, p)
		if err := sh.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		v, err := remote.OpenView(context.Background(), st, "db")
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil {
			now := named(v)
			for _, g := range prev.Tip.Segments {
				if !now[g.Name] {
					if err := prev.Materialize(context.Background(), t.TempDir(), nil); err != nil {
						t.Fatalf("reading the head opened before a merge (segment %s replaced): %v", g.Name, err)
					}
					return
				}
			}
		}
		prev = v
	}
	t.Fatal("no merge replaced a segment of the tip")
}
