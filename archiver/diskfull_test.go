package archiver

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/internal/mariadbtest"
)

// nsEnv marks a test process re-executed in its own user and mount
// namespace (see inMountNamespace).
const nsEnv = "UNDERSTUDY_TEST_MOUNT_NAMESPACE"

// canMount reports whether this process may mount a tmpfs: as root, or with
// passwordless sudo. UNDERSTUDY_TEST_FORCE_USERNS=1 pretends it may not,
// to exercise the namespace path.
func canMount() bool {
	if os.Getenv("UNDERSTUDY_TEST_FORCE_USERNS") == "1" && os.Getenv(nsEnv) == "" {
		return false
	}
	return os.Geteuid() == 0 || exec.Command("sudo", "-n", "true").Run() == nil
}

// inMountNamespace runs the test t again, in a child process that is root
// of a new user and mount namespace (unshare --map-root-user --mount), where
// an unprivileged user may mount a tmpfs. It reports whether it did: the
// caller then returns. Without any way to mount, the test fails: it must
// not be skipped.
func inMountNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(nsEnv) == "1" || canMount() {
		return false
	}
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a user and mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("this test mounts a tmpfs: as root, with passwordless sudo, or in a user namespace (unshare --user --map-root-user --mount); the last way failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the test did not pass in the namespace")
	}
	return true
}

// mountTmpfs mounts a tmpfs of size on dir (as root, or with sudo -n) and
// returns a function that resizes it. A missing privilege fails the test:
// it must not be skipped.
func mountTmpfs(t *testing.T, dir, size string) (resize func(string)) {
	t.Helper()
	mount := func(args ...string) error {
		cmd := exec.Command("mount", args...)
		if os.Geteuid() != 0 {
			cmd = exec.Command("sudo", append([]string{"-n", "mount"}, args...)...)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mount %v: %v: %s", args, err, out)
		}
		return nil
	}
	if err := mount("-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir); err != nil {
		t.Fatalf("this test needs to mount a tmpfs (run as root or with passwordless sudo): %v", err)
	}
	t.Cleanup(func() {
		cmd := exec.Command("umount", "-l", dir)
		if os.Geteuid() != 0 {
			cmd = exec.Command("sudo", "-n", "umount", "-l", dir)
		}
		cmd.Run()
	})
	return func(size string) {
		if err := mount("-t", "tmpfs", "-o", "remount,size="+size, "tmpfs", dir); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDiskFullPausesAndResumes: the archive's filesystem fills up while
// the primary writes. Archiving stops cleanly with a one-line error that
// names the real file, the process stays up, and once the filesystem is
// enlarged archiving resumes by itself: every GTID is archived exactly
// once, with no gap and no corruption.
func TestDiskFullPausesAndResumes(t *testing.T) {
	if inMountNamespace(t) {
		return
	}
	p := startPrimary(t)
	p.Exec(t, "CREATE TABLE app.blobs (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB)")
	dir := t.TempDir()
	resize := mountTmpfs(t, dir, "1m")
	r := start(t, p, dir, nil, func(a *Archiver) {
		a.DiskEvery = 200 * time.Millisecond
		a.LowDisk = func(free, total uint64) bool { return free < total/2 }
		a.MinFree = "50%"
	})
	<-r.gens
	for i := 0; i < 12; i++ { // about 1.2 MB of row data: more than the filesystem holds
		p.Exec(t, "INSERT INTO app.blobs (b) VALUES (REPEAT(SHA2(?, 256), 1600))", i)
	}
	mariadbtest.Eventually(t, "the disk-full error", 30*time.Second, func() bool {
		return strings.Contains(r.a.Status().LastError, "no space left on device")
	})
	st := r.a.Status()
	if strings.Contains(st.LastError, ".tmp") || strings.Contains(st.LastError, "\n") || !strings.Contains(st.LastError, dir+"/binlog.0000") || !strings.Contains(st.LastError, "resumes by itself") {
		t.Fatalf("disk-full error %q: want one line naming the archived file", st.LastError)
	}
	if st.State != understudy.StateError {
		t.Fatalf("state %s while the disk is full", st.State)
	}
	mariadbtest.Eventually(t, "a low-disk warning", 10*time.Second, func() bool {
		s := r.a.Status()
		return len(s.Warnings) > 0 && strings.Contains(s.Warnings[0], "min_free 50%") && s.Disk != nil && s.Disk.TotalBytes > 0
	})
	if !strings.Contains(r.logs.String(), "archive disk full") {
		t.Fatalf("no log line for the full disk:\n%s", r.logs.String())
	}
	// More writes while it is full, then room again.
	for i := 12; i < 15; i++ {
		p.Exec(t, "INSERT INTO app.blobs (b) VALUES (REPEAT(SHA2(?, 256), 1600))", i)
	}
	resize("64m")
	write(t, p, 5)
	waitCaughtUp(t, p, dir)
	mariadbtest.Eventually(t, "state streaming", 10*time.Second, func() bool { return r.a.Status().State == understudy.StateStreaming })
	sameGTIDs(t, "after the disk was full", archived(t, dir)[1], p.BinlogGTIDs(t))
	if !strings.Contains(r.logs.String(), "archiving resumes") {
		t.Fatalf("no log line for the resume:\n%s", r.logs.String())
	}
	r.stop(t)
}
