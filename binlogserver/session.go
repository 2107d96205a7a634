package binlogserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/server"
)

// session answers one replica connection: the queries of the replica IO
// thread, COM_REGISTER_SLAVE and COM_BINLOG_DUMP.
type session struct {
	srv  *Server
	log  *slog.Logger
	ctx  context.Context
	conn *server.Conn
	// vars holds the user variables the replica set (@name, lower case).
	vars map[string]string
	// replicaID is the server_id of COM_REGISTER_SLAVE.
	replicaID uint32
	done      bool
}

var _ server.Handler = (*session)(nil)

var (
	setRe      = regexp.MustCompile(`(?is)^\s*SET\s+(.*)$`)
	assignRe   = regexp.MustCompile(`(?is)^\s*(@?@?[\w.]+)\s*:?=\s*(.*?)\s*$`)
	showVarRe  = regexp.MustCompile(`(?is)^\s*SHOW\s+(?:GLOBAL\s+|SESSION\s+)?VARIABLES\s+LIKE\s+'([^']*)'\s*$`)
	selectVars = regexp.MustCompile(`(?is)^\s*SELECT\s+(.*?)\s*(?:LIMIT\s+\d+)?\s*;?\s*$`)
)

func (h *session) UseDB(string) error { return nil }

func (h *session) HandleQuery(query string) (*mysql.Result, error) {
	q := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(query), ";"))
	if m := setRe.FindStringSubmatch(q); m != nil {
		for _, part := range splitTopLevel(m[1]) {
			a := assignRe.FindStringSubmatch(part)
			if a == nil {
				continue // SET NAMES utf8 and the like
			}
			name := strings.ToLower(a[1])
			if strings.HasPrefix(name, "@") && !strings.HasPrefix(name, "@@") {
				v, err := h.value(a[2])
				if err != nil {
					return nil, err
				}
				h.vars[strings.TrimPrefix(name, "@")] = v
			}
		}
		return &mysql.Result{}, nil
	}
	if m := showVarRe.FindStringSubmatch(q); m != nil {
		name := strings.ToLower(m[1])
		var rows [][]any
		v, err := h.global(name)
		switch {
		case err == nil:
			rows = append(rows, []any{name, shown(v)})
		case !isUnknownVariable(err): // no such variable: no row
			return nil, err
		}
		return resultset([]string{"Variable_name", "Value"}, rows)
	}
	if m := selectVars.FindStringSubmatch(q); m != nil {
		var names []string
		var row []any
		for _, expr := range splitTopLevel(m[1]) {
			expr = strings.TrimSpace(expr)
			v, ok, err := h.eval(expr)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, h.unsupported(query)
			}
			names = append(names, expr)
			row = append(row, v)
		}
		return resultset(names, [][]any{row})
	}
	return nil, h.unsupported(query)
}

func (h *session) unsupported(query string) error {
	h.log.Warn("replica sent a query the binlog server does not answer", "query", query)
	return mysql.NewError(mysql.ER_NOT_SUPPORTED_YET, fmt.Sprintf("understudy binlog server does not support this query: %.200s", query))
}

// value evaluates the right-hand side of a SET: "" for NULL and for what
// eval does not evaluate.
func (h *session) value(expr string) (string, error) {
	v, ok, err := h.eval(expr)
	if err != nil || !ok || v == nil {
		return "", err
	}
	return fmt.Sprint(v), nil
}

// eval evaluates the expressions a replica selects; ok is false for one it
// does not evaluate, err is set for a server variable it cannot answer.
func (h *session) eval(expr string) (v any, ok bool, err error) {
	low := strings.ToLower(strings.TrimSpace(expr))
	switch {
	case len(low) >= 2 && (low[0] == '\'' || low[0] == '"') && low[len(low)-1] == low[0]:
		return expr[1 : len(expr)-1], true, nil
	case low == "unix_timestamp()":
		return time.Now().Unix(), true, nil
	case low == "version()":
		return Version, true, nil
	case low == "null":
		return nil, true, nil
	case strings.HasPrefix(low, "@@"):
		name := strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(low, "@@"), "global."), "session.")
		v, err := h.global(name)
		if isUnknownVariable(err) {
			h.log.Warn("replica asked for a server variable the binlog server does not have", "variable", name)
		}
		return selected(v), err == nil, err
	case strings.HasPrefix(low, "@"):
		v, ok := h.vars[strings.TrimPrefix(low, "@")]
		if !ok {
			return nil, true, nil // an unset user variable is NULL, as in MariaDB
		}
		return v, true, nil
	}
	if n, err := strconv.ParseInt(low, 10, 64); err == nil {
		return n, true, nil
	}
	return nil, false, nil
}

// global answers a server variable (see Server.variable). A variable the
// binlog server does not have is ERR 1193, as in MariaDB; an archive that
// cannot be read is an error, never a made-up answer.
func (h *session) global(name string) (any, error) {
	v, err := h.srv.variable(name)
	if errors.Is(err, errUnknownVariable) {
		return nil, mysql.NewError(mysql.ER_UNKNOWN_SYSTEM_VARIABLE, fmt.Sprintf("Unknown system variable '%.64s'", name))
	}
	if err != nil {
		h.log.Warn("answering a server variable", "variable", name, "err", err.Error())
		return nil, mysql.NewError(mysql.ER_UNKNOWN_ERROR, fmt.Sprintf("%.400s", err.Error()))
	}
	return v, nil
}

// isUnknownVariable reports the ERR 1193 of global.
func isUnknownVariable(err error) bool {
	var me *mysql.MyError
	return errors.As(err, &me) && me.Code == mysql.ER_UNKNOWN_SYSTEM_VARIABLE
}

func (h *session) HandleFieldList(string, string) ([]*mysql.Field, error) {
	return nil, mysql.NewError(mysql.ER_NOT_SUPPORTED_YET, "not supported by the understudy binlog server")
}

func (h *session) HandleStmtPrepare(string) (int, int, any, error) {
	return 0, 0, nil, mysql.NewError(mysql.ER_NOT_SUPPORTED_YET, "not supported by the understudy binlog server")
}

func (h *session) HandleStmtExecute(any, string, []any) (*mysql.Result, error) {
	return nil, mysql.NewError(mysql.ER_NOT_SUPPORTED_YET, "not supported by the understudy binlog server")
}

func (h *session) HandleStmtClose(any) error { return nil }

// HandleOtherCommand takes COM_REGISTER_SLAVE and COM_BINLOG_DUMP.
func (h *session) HandleOtherCommand(cmd byte, data []byte) error {
	switch cmd {
	case mysql.COM_REGISTER_SLAVE:
		if len(data) >= 4 {
			h.replicaID = binary.LittleEndian.Uint32(data)
		}
		if h.replicaID == h.srv.cfg.ServerID {
			fe := &fatalError{kind: KindRequest, msg: fmt.Sprintf("replica server_id %d equals the binlog server's server_id; give the replica another server_id", h.replicaID)}
			h.srv.fail(h.log, fe)
			return fe.myError()
		}
		return nil
	case mysql.COM_BINLOG_DUMP:
		err := h.dump(data)
		h.done = true
		if err != nil {
			// Refused before the stream began: the library sends the
			// error in the command's packet sequence.
			var fe *fatalError
			if errors.As(err, &fe) {
				h.srv.fail(h.log, fe)
				return fe.myError()
			}
			h.log.Debug("stream to replica ended", "err", err)
		}
		h.conn.Close()
		return nil
	case mysql.COM_BINLOG_DUMP_GTID:
		return mysql.NewError(mysql.ER_NOT_SUPPORTED_YET, "COM_BINLOG_DUMP_GTID is MySQL's; understudy serves MariaDB replicas (MASTER_USE_GTID=slave_pos)")
	}
	return mysql.NewError(mysql.ER_UNKNOWN_COM_ERROR, fmt.Sprintf("command %d is not supported by the understudy binlog server", cmd))
}

// splitTopLevel splits on commas outside quotes and parentheses.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func resultset(names []string, rows [][]any) (*mysql.Result, error) {
	if rows == nil {
		rows = [][]any{}
	}
	rs, err := mysql.BuildSimpleTextResultset(names, rows)
	if err != nil {
		return nil, err
	}
	return mysql.NewResult(rs), nil
}

// fatalError is an ERR 1236, which makes a replica stop instead of
// retrying; kind says what failed (see Metrics).
type fatalError struct {
	kind string
	msg  string
}

func (e *fatalError) Error() string { return e.msg }

// maxMessage keeps a message inside the replica's 512-byte error buffer,
// with the "Got fatal error 1236 from master when reading data from binary
// log: '…'" around it.
const maxMessage = 400

func (e *fatalError) myError() *mysql.MyError {
	msg := e.msg
	if len(msg) > maxMessage {
		cut := maxMessage - 3
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "..."
	}
	return &mysql.MyError{Code: mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG, State: "HY000", Message: msg}
}

func fatal(kind, format string, args ...any) error {
	return &fatalError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
