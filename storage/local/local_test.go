package local_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy/storage"
	"github.com/understudy-db/understudy/storage/local"
	"github.com/understudy-db/understudy/storage/storagetest"
)

func open(t *testing.T) storage.Backend {
	b, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConformance runs the shared suite against a directory.
func TestConformance(t *testing.T) {
	storagetest.Run(t, open, storagetest.Options{})
}

// The helper process of TestCrossProcess: with UNDERSTUDY_LOCAL_HELPER=ROOT
// and ID, it races for race/0..19 with PutIfAbsent, printing the names it
// won, and adds 10 to the counter with ReplaceIf.
func TestMain(m *testing.M) {
	if root := os.Getenv("UNDERSTUDY_LOCAL_HELPER"); root != "" {
		os.Exit(helper(root, os.Getenv("UNDERSTUDY_LOCAL_HELPER_ID")))
	}
	os.Exit(m.Run())
}

func helper(root, id string) int {
	ctx := context.Background()
	b, err := local.Open(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range 20 {
		name := fmt.Sprintf("race/%d", i)
		_, err := b.PutIfAbsent(ctx, name, strings.NewReader(id), int64(len(id)))
		switch {
		case err == nil:
			fmt.Println(name)
		case !errors.Is(err, storage.ErrExists):
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	for range 10 {
		for {
			st, err := b.Stat(ctx, "counter")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			rc, err := b.Get(ctx, "counter", 0, -1)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			if st2, _ := b.Stat(ctx, "counter"); st2.ETag != st.ETag {
				continue
			}
			n, _ := strconv.Atoi(string(data))
			next := strconv.Itoa(n + 1)
			_, err = b.ReplaceIf(ctx, "counter", strings.NewReader(next), int64(len(next)), st.ETag)
			if errors.Is(err, storage.ErrPrecondition) {
				continue
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			break
		}
	}
	return 0
}

// TestCrossProcess: conditional writes are atomic across processes: of 4
// processes creating the same names, exactly one wins each, and their
// ReplaceIf increments of one counter are all counted.
func TestCrossProcess(t *testing.T) {
	root := t.TempDir()
	b, err := local.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Put(t, b, "counter", []byte("0"))
	const procs = 4
	outs := make([]*strings.Builder, procs)
	cmds := make([]*exec.Cmd, procs)
	for i := range procs {
		outs[i] = &strings.Builder{}
		cmds[i] = exec.Command(os.Args[0], "-test.run=^$")
		cmds[i].Env = append(os.Environ(), "UNDERSTUDY_LOCAL_HELPER="+root, fmt.Sprintf("UNDERSTUDY_LOCAL_HELPER_ID=p%d", i))
		cmds[i].Stdout, cmds[i].Stderr = outs[i], os.Stderr
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("helper process: %v", err)
		}
	}
	winners := map[string][]string{}
	for i, out := range outs {
		for _, name := range strings.Fields(out.String()) {
			winners[name] = append(winners[name], fmt.Sprintf("p%d", i))
		}
	}
	for i := range 20 {
		name := fmt.Sprintf("race/%d", i)
		w := winners[name]
		if len(w) != 1 {
			t.Fatalf("%s: won by %v, want exactly one process", name, w)
		}
		if got := storagetest.Read(t, b, name, 0, -1); string(got) != w[0] {
			t.Fatalf("%s holds %q, but %s won it", name, got, w[0])
		}
	}
	if got := string(storagetest.Read(t, b, "counter", 0, -1)); got != fmt.Sprint(procs*10) {
		t.Fatalf("counter = %s after %d increments by %d processes", got, procs*10, procs)
	}
}

// TestFiles: modes 0600 and 0700, no temporary file left, stale ones
// removed on Open.
func TestFiles(t *testing.T) {
	root := t.TempDir()
	b, err := local.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Put(t, b, "db1/snapshots/s1/x", []byte("x"))
	if _, err := b.PutIfAbsent(context.Background(), "db1/y", strings.NewReader("y"), 1); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		switch {
		case strings.HasPrefix(d.Name(), ".tmp-"):
			t.Errorf("temporary file left: %s", path)
		case d.IsDir() && path != root && fi.Mode().Perm() != 0o700:
			t.Errorf("%s: mode %v, want 0700", path, fi.Mode().Perm())
		case !d.IsDir() && fi.Mode().Perm() != 0o600:
			t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(root, "db1", ".tmp-1"), filepath.Join(root, "db1", ".tmp-2")
	os.WriteFile(stale, []byte("half"), 0o600)
	os.WriteFile(fresh, []byte("half"), 0o600)
	old := time.Now().Add(-2 * local.StaleTemp)
	os.Chtimes(stale, old, old)
	if _, err := local.Open(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("Open left a stale temporary file")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("Open removed a temporary file that a writer may still be writing")
	}
	if names, _ := storagetest.List(t, b, ""); strings.Join(names, " ") != "db1/snapshots/s1/x db1/y" {
		t.Fatalf("list shows %q", names)
	}
}
