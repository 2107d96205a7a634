package replication

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/understudy-db/understudy"
)

// MariaDB error numbers understudy explains.
const (
	errAccessDenied         = 1045
	errDBAccessDenied       = 1044
	errSpecificAccessDenied = 1227
	errTableAccessDenied    = 1142
	errMasterFatalReading   = 1236
	errUnknownSystemVar     = 1193
)

// Causes that no retry fixes without a human: errors.Is finds them in the
// errors of Check and Stream, whose text stays the primary's own message.
var (
	// ErrAccessDenied: the primary refused the user or password.
	ErrAccessDenied = errors.New("access denied")
	// ErrPrivilege: the user lacks REPLICATION SLAVE (or another privilege).
	ErrPrivilege = errors.New("missing privilege")
	// ErrNoBinlog: binary logging is off on the primary.
	ErrNoBinlog = errors.New("binary logging disabled")
	// ErrServerID: the primary has understudy's server_id.
	ErrServerID = errors.New("server_id clash")
)

// ErrTimeout marks a primary that did not answer in time: a connect, a
// login or a query that got no answer within ConnectTimeout, or a stream
// silent for DeadAfter(heartbeat). The network drops packets (or the
// primary hangs); a retry a second later costs little, and is the one
// that succeeds once the network is back.
var ErrTimeout = errors.New("no answer from the primary")

// causeError is an error whose text is err's and whose cause, for
// errors.Is, is cause.
type causeError struct {
	err, cause error
}

func (e *causeError) Error() string   { return e.err.Error() }
func (e *causeError) Unwrap() []error { return []error{e.err, e.cause} }

// withCause marks err with a cause without changing its text.
func withCause(err, cause error) error { return &causeError{err: err, cause: cause} }

var errorTextRe = regexp.MustCompile(`ERROR (\d+) \(\w+\): (.*)`)

func parseErrorText(s string) (int, string, bool) {
	m := errorTextRe.FindStringSubmatch(s)
	if m == nil {
		return 0, "", false
	}
	n, err := strconv.Atoi(m[1])
	return n, m[2], err == nil
}

// describe maps a MariaDB error to a one-line error with a hint.
func describe(src understudy.Source, code int, msg string, cause error) error {
	e := &understudy.Error{Op: "replicate from " + src.Addr(), Err: fmt.Errorf("MariaDB error %d: %s", code, msg)}
	switch code {
	case errAccessDenied:
		e.Op = "connect to " + src.Addr()
		e.Err = withCause(e.Err, ErrAccessDenied)
		e.Hint = fmt.Sprintf("wrong user or password for %q; check the source's password setting", src.User)
	case errSpecificAccessDenied, errDBAccessDenied, errTableAccessDenied:
		e.Err = withCause(e.Err, ErrPrivilege)
		e.Hint = fmt.Sprintf("missing privilege: run GRANT REPLICATION SLAVE ON *.* TO '%s'@'<understudy host>' on the primary", src.User)
	case errMasterFatalReading:
		low := strings.ToLower(msg)
		switch {
		case strings.Contains(low, "purged") || strings.Contains(low, "could not find gtid state"):
			e.Err = fmt.Errorf("%w: %s", understudy.ErrPurged, msg)
			e.Hint = "the primary no longer has the binlogs that follow the archive; nothing after the archive's position can be archived without a gap. Keep binlogs longer (expire_logs_days) and take a new snapshot"
		case strings.Contains(low, "binary log is not open"):
			e.Err = withCause(e.Err, ErrNoBinlog)
			e.Hint = "binary logging is off on the primary: start it with log_bin and restart"
		}
	}
	return e
}

// connectError explains a failure to reach the primary.
func connectError(src understudy.Source, err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &understudy.Error{Op: "connect to " + src.Addr(), Err: errors.New("connection refused"), Hint: "is MariaDB running and listening on that address?"}
	case errors.As(err, &ne) && ne.Timeout():
		return &understudy.Error{Op: "connect to " + src.Addr(), Err: withCause(fmt.Errorf("timed out: no answer within %s", ConnectTimeout), ErrTimeout), Hint: "host unreachable, or the network drops packets; retrying"}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &understudy.Error{Op: "connect to " + src.Addr(), Err: fmt.Errorf("unknown host %q", dnsErr.Name)}
	}
	return &understudy.Error{Op: "connect to " + src.Addr(), Err: err}
}
