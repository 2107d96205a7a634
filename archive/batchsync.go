package archive

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// BatchSync makes many small files durable at once: a snapshot of a
// thousand small tables writes two thousand files, and one fsync each
// (each a journal commit) took longer than reading the tables. See
// OpenBatchSync for when it is used.
type BatchSync struct{ f *os.File }

// Close closes the directory it holds open.
func (b *BatchSync) Close() error { return b.f.Close() }

// Filesystems whose syncfs(2) writes back every dirty file and directory
// of the filesystem and waits for it. Others (network and FUSE file
// systems among them) may not, and get one fsync per file.
var batchSyncFilesystems = map[int64]string{
	unix.EXT4_SUPER_MAGIC:  "ext4",
	unix.XFS_SUPER_MAGIC:   "xfs",
	unix.BTRFS_SUPER_MAGIC: "btrfs",
}

// OpenBatchSync opens dir for a batch sync when its filesystem and the
// kernel can be trusted with one, and returns nil otherwise: then the
// caller fsyncs each file. Open it before writing the files that its Sync
// is to make durable.
func OpenBatchSync(dir string) *BatchSync {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil || !syncfsReportsErrors(unix.ByteSliceToString(u.Release[:])) {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil
	}
	if _, ok := batchSyncFilesystems[int64(st.Type)]; !ok {
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	return &BatchSync{f: f}
}

// syncfsReportsErrors says whether a kernel release ("6.1.0-18-amd64")
// is 5.8 or later: before 5.8, syncfs(2) returned success even when the
// write-back of a file had failed.
func syncfsReportsErrors(release string) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	minorDigits := parts[1]
	if i := strings.IndexFunc(minorDigits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorDigits = minorDigits[:i] // "15-rc1"
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(minorDigits)
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 8
}

// Sync makes every file and directory written on the filesystem since
// OpenBatchSync durable, with syncfs(2), and returns an error if the
// write-back of any of them failed since then.
func (b *BatchSync) Sync() error {
	if err := unix.Syncfs(int(b.f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", b.f.Name(), err)
	}
	return nil
}
