package understudy

import (
	"errors"
	"strings"
)

// Sentinel errors shared by the packages of understudy.
var (
	// ErrCorrupt means an archived file does not hold what it should.
	ErrCorrupt = errors.New("archive corrupt")
	// ErrLocked means another process holds the archive of a source.
	ErrLocked = errors.New("archive locked by another process")
	// ErrGap means the stream or archive skips transactions.
	ErrGap = errors.New("gap in the GTID sequence")
	// ErrPurged means the primary no longer has the binlogs needed to resume.
	ErrPurged = errors.New("needed binlog purged on the primary")
)

// Error is the structured error of understudy: what was done (Op), to which
// source, the cause and, when there is one, a hint at the fix.
type Error struct {
	Op     string
	Source string
	Err    error
	Hint   string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString("source ")
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }
