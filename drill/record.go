package drill

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
)

// File names in a source's archive directory.
const (
	// FileName keeps the source's last drill result (see Record).
	FileName = "drill.json"
	// lockName is locked while a drill of the source runs.
	lockName = "drill.lock"
)

// Record is drill.json: the last drill of a source and the last one that
// passed, so that the time and RTO of the last success survive a failed
// drill and a restart of `understudy run`.
type Record struct {
	Last understudy.DrillResult `json:"last"`
	// LastSuccess is nil until a drill passed.
	LastSuccess *understudy.DrillResult `json:"last_success,omitempty"`
}

// ReadRecord reads the drill record of the source whose archive
// directory is dir; ok is false when no drill was recorded.
func ReadRecord(dir string) (r Record, ok bool, err error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return r, true, nil
}

// save records res as the source's last drill (and last success, if it
// passed), atomically.
func save(dir string, res understudy.DrillResult) error {
	r, _, err := ReadRecord(dir)
	if err != nil {
		r = Record{} // a damaged record is replaced
	}
	r.Last = res
	if res.OK {
		r.LastSuccess = &res
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return archive.WriteFileAtomic(filepath.Join(dir, FileName), append(b, '\n'))
}

// lock takes the source's drill lock: one drill of a source runs at a
// time, from the command line or on run's schedule.
func lock(dir, source string) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("drill of source %s: %w", source, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: source %s (%s is locked)", ErrBusy, source, filepath.Join(dir, lockName))
		}
		return nil, fmt.Errorf("drill of source %s: lock %s: %w", source, filepath.Join(dir, lockName), err)
	}
	return func() { f.Close() }, nil
}
