package replication

import (
	"errors"
	"strings"
	"testing"

	"github.com/understudy-db/understudy"
)

// TestDescribeCauses: the errors that no retry fixes carry their cause for
// errors.Is, and keep the primary's message as their text.
func TestDescribeCauses(t *testing.T) {
	src := understudy.Source{Host: "127.0.0.1", Port: 3306, User: "u"}
	for _, tc := range []struct {
		code  int
		msg   string
		cause error // nil: none of them
		text  string
	}{
		{errAccessDenied, "Access denied for user 'u'@'127.0.0.1' (using password: YES)", ErrAccessDenied, "connect to 127.0.0.1:3306: MariaDB error 1045: Access denied for user 'u'@'127.0.0.1' (using password: YES) (wrong user or password"},
		{errSpecificAccessDenied, "Access denied; you need (at least one of) the REPLICATION SLAVE privilege(s)", ErrPrivilege, "MariaDB error 1227: Access denied; you need"},
		{errMasterFatalReading, "Binary log is not open", ErrNoBinlog, "MariaDB error 1236: Binary log is not open"},
		{errMasterFatalReading, "Could not find GTID state requested by slave in any binlog files", understudy.ErrPurged, "needed binlog purged"},
		{2013, "Lost connection to server during query", nil, "MariaDB error 2013: Lost connection"},
	} {
		err := describe(src, tc.code, tc.msg, nil)
		for _, c := range []error{ErrAccessDenied, ErrPrivilege, ErrNoBinlog, ErrServerID, understudy.ErrPurged} {
			if got, want := errors.Is(err, c), c == tc.cause; got != want {
				t.Errorf("%d %q: errors.Is(%v)=%v, want %v", tc.code, tc.msg, c, got, want)
			}
		}
		if !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%d: text %q, want it to contain %q", tc.code, err, tc.text)
		}
	}
}
