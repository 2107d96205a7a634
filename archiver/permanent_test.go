package archiver

import (
	"errors"
	"fmt"
	"testing"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/replication"
)

// TestPermanent: errors are classified by cause, never by whether they
// carry a hint.
func TestPermanent(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused, with a hint", &understudy.Error{Op: "connect", Err: errors.New("connection refused"), Hint: "is MariaDB running?"}, false},
		{"stream silence", &understudy.Error{Op: "stream", Err: errors.New("no event or heartbeat for 3s")}, false},
		{"no answer", &understudy.Error{Op: "connect", Err: fmt.Errorf("timed out: %w", replication.ErrTimeout)}, false},
		{"plain", errors.New("EOF"), false},
		{"access denied, no hint", &understudy.Error{Op: "connect", Err: fmt.Errorf("x: %w", replication.ErrAccessDenied)}, true},
		{"privilege", fmt.Errorf("wrapped: %w", &understudy.Error{Err: replication.ErrPrivilege, Hint: "GRANT"}), true},
		{"no binlog", replication.ErrNoBinlog, true},
		{"server_id", &understudy.Error{Err: replication.ErrServerID}, true},
		{"purged", fmt.Errorf("%w: gone", understudy.ErrPurged), true},
	} {
		if got := permanent(tc.err); got != tc.want {
			t.Errorf("%s: permanent=%v, want %v", tc.name, got, tc.want)
		}
	}
}
