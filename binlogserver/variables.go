package binlogserver

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlog"
)

// The server variables a replica or a tool may ask the binlog server
// (SELECT @@name, SHOW VARIABLES LIKE 'name'). Each answer is read from the
// archive or is a fact of the binlog server itself; none is a guess.
// docs/binlog-server.md, "Server variables", gives the rules.

// errUnknownVariable means the binlog server has no such variable: a
// replica's question goes unanswered rather than answered wrongly.
var errUnknownVariable = errors.New("unknown system variable")

// Answers of the binlog server itself.
const (
	versionComment = "understudy binlog server"
	// An archive with nothing in it to tell: the answers MariaDB gives by
	// default (binlog_checksum) or that understudy expects of a primary
	// (binlog_format, see replication.Check), which nothing contradicts.
	defaultChecksum = "CRC32"
	defaultFormat   = "ROW"
)

// variable answers the server variable name (lower case, without @@ and
// scope). It returns errUnknownVariable for a variable the binlog server
// does not have, and an error when the archive cannot be read.
func (s *Server) variable(name string) (any, error) {
	switch name {
	case "server_id":
		return int64(s.cfg.ServerID), nil
	case "version":
		return Version, nil
	case "version_comment":
		return versionComment, nil
	case "log_bin":
		return onOff(true), nil
	case "gtid_strict_mode":
		// The archive holds each domain's GTIDs in increasing order, and
		// the stream refuses one that does not follow (see stream.send).
		return onOff(true), nil
	case "binlog_checksum":
		return s.binlogChecksum()
	case "binlog_format":
		return s.binlogFormat()
	case "gtid_domain_id":
		d, err := s.gtidDomainID()
		return int64(d), err
	case "gtid_binlog_pos", "gtid_current_pos":
		a, err := s.openArchive()
		if err != nil {
			return nil, err
		}
		return a.Position().String(), nil
	// The binlog server's own session defaults, not the primary's: every
	// event carries the primary's session settings in its own status
	// variables.
	case "time_zone":
		return "SYSTEM", nil
	case "character_set_server":
		return "utf8mb4", nil
	case "collation_server":
		return "utf8mb4_general_ci", nil
	}
	// rpl_semi_sync_*: the binlog server does not implement semi-sync, so
	// it has none of its variables, like a server without the semi-sync
	// plugin. A replica with rpl_semi_sync_slave_enabled then replicates
	// asynchronously; told OFF, it would expect a semi-sync header on
	// every event.
	return nil, errUnknownVariable
}

// onOff is a boolean server variable. As in MariaDB, SELECT @@name
// answers the integer 1 or 0, and SHOW VARIABLES the text ON or OFF.
type onOff bool

// selected is v as SELECT @@name answers it.
func selected(v any) any {
	if b, ok := v.(onOff); ok {
		if b {
			return int64(1)
		}
		return int64(0)
	}
	return v
}

// shown is v as SHOW VARIABLES answers it.
func shown(v any) any {
	if b, ok := v.(onOff); ok {
		if b {
			return "ON"
		}
		return "OFF"
	}
	return v
}

func (s *Server) openArchive() (*archive.Archive, error) {
	a, err := archive.Open(s.cfg.Dir)
	if err != nil {
		return nil, archiveError(s.cfg.Source, err)
	}
	return a, nil
}

// binlogChecksum is the checksum setting of the archive's newest file:
// what the primary used last, as a MariaDB primary's @@binlog_checksum is
// the setting of its current binlog file. A replica asks before it says
// where it starts; each file's format description, which it receives
// before the file's events, tells it the file's own setting.
func (s *Server) binlogChecksum() (string, error) {
	a, err := s.openArchive()
	if err != nil {
		return "", err
	}
	files := a.Files()
	if len(files) == 0 {
		return defaultChecksum, nil
	}
	r, err := a.OpenFile(files[len(files)-1])
	if err != nil {
		return "", archiveError(s.cfg.Source, err)
	}
	defer r.Close()
	if r.Checksum {
		return "CRC32", nil
	}
	return "NONE", nil
}

// gtidDomainID is the domain of the newest archived transaction that the
// primary wrote itself (its GTID's server_id is the server_id of the
// primary's format description), else of the newest archived transaction;
// 0 for an archive without transactions. A replica asks it while it
// connects, so the answer comes from what archive.Open reads anyway (the
// files' start and end positions); a file's index is read only when the
// newest file holds several domains that those do not tell apart. Damage
// the stream would reach later is not reported here.
func (s *Server) gtidDomainID() (uint32, error) {
	a, err := s.openArchive()
	if err != nil {
		return 0, err
	}
	files := a.Files()
	for i := len(files) - 1; i >= 0; i-- {
		fi := files[i]
		// each domain's last GTID in the file
		var written []understudy.GTID
		for _, g := range fi.EndPosition.GTIDs() {
			if start, ok := fi.StartPosition.Domain(g.Domain); !ok || start != g {
				written = append(written, g)
			}
		}
		switch len(written) {
		case 0:
			continue
		case 1:
			return written[0].Domain, nil
		}
		r, err := a.OpenFile(fi)
		if err != nil {
			return 0, archiveError(s.cfg.Source, err)
		}
		h, err := binlog.ParseHeader(r.FormatDescription)
		r.Close()
		if err != nil {
			return 0, archiveError(s.cfg.Source, err)
		}
		var own []understudy.GTID
		for _, g := range written {
			if g.ServerID == h.ServerID {
				own = append(own, g)
			}
		}
		if len(own) == 1 {
			return own[0].Domain, nil
		}
		recs, err := a.Records(fi)
		if err != nil {
			return 0, archiveError(s.cfg.Source, err)
		}
		for j := len(recs) - 1; j >= 0; j-- {
			if len(own) == 0 || recs[j].GTID.ServerID == h.ServerID {
				return recs[j].GTID.Domain, nil
			}
		}
	}
	return 0, nil
}

// dmlSeen says how the changes of an archived file are logged.
type dmlSeen uint8

const (
	seenRows       dmlSeen = 1 << iota // row events
	seenStatements                     // DML statements
)

// fileFormat is what was learnt of one archived file's DML: from its
// first transaction to the one that ends at end.
type fileFormat struct {
	end  uint32
	seen dmlSeen
}

// binlogFormat is how the archive's newest changes are logged: the DML of
// the newest file that has any. Row events only: ROW; DML statements only:
// STATEMENT; both: MIXED (a MIXED primary whose statements were all safe
// logged only statements, and its archive answers STATEMENT). DDL is
// logged as statements in every format and does not count. An archive
// without DML answers ROW. A file is read once; the active file from where
// the last answer left off.
func (s *Server) binlogFormat() (string, error) {
	a, err := s.openArchive()
	if err != nil {
		return "", err
	}
	files := a.Files()
	for i := len(files) - 1; i >= 0; i-- {
		seen, err := s.fileFormat(a, files[i])
		if err != nil {
			return "", archiveError(s.cfg.Source, err)
		}
		switch seen {
		case seenRows:
			return "ROW", nil
		case seenStatements:
			return "STATEMENT", nil
		case seenRows | seenStatements:
			return "MIXED", nil
		}
	}
	return defaultFormat, nil
}

// fileFormat reads the DML of fi's transactions not read before.
func (s *Server) fileFormat(a *archive.Archive, fi archive.FileInfo) (dmlSeen, error) {
	s.fmtMu.Lock()
	defer s.fmtMu.Unlock()
	ff := s.formats[fi.Name]
	if fi.Transactions == 0 || fi.Size <= int64(ff.end) || ff.seen == seenRows|seenStatements {
		return ff.seen, nil
	}
	recs, err := a.Records(fi)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 || recs[len(recs)-1].End <= ff.end {
		return ff.seen, nil
	}
	r, err := a.OpenFile(fi)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	for _, rec := range recs {
		if rec.End <= ff.end {
			continue
		}
		if ff.seen == seenRows|seenStatements {
			break // MIXED: nothing more to learn
		}
		seen, err := txnFormat(r.Events(int64(rec.Start), int64(rec.End)), r.Checksum)
		if err != nil {
			return 0, fmt.Errorf("%s at offset %d (transaction %s): %w", fi.Name, rec.Start, rec.GTID, err)
		}
		ff.seen |= seen
		ff.end = rec.End
	}
	if s.formats == nil {
		s.formats = map[string]fileFormat{}
	}
	s.formats[fi.Name] = ff
	return ff.seen, nil
}

// txnFormat says how one transaction's DML is logged: row events, or DML
// statements (a QUERY event other than transaction control, in a
// transaction that is neither DDL nor standalone; LOAD DATA's events).
func txnFormat(r *binlog.Reader, checksum bool) (dmlSeen, error) {
	var seen dmlSeen
	ddl := false
	for first := true; ; first = false {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return seen, nil
		}
		if err != nil {
			return 0, err
		}
		switch typ := ev[4]; {
		case first:
			gi, err := binlog.ParseGTIDEvent(ev, checksum)
			if err != nil {
				return 0, err
			}
			ddl = gi.Flags&(binlog.GTIDDDL|binlog.GTIDStandalone) != 0
		case isRowsEvent(typ):
			seen |= seenRows
		case ddl:
		case typ == binlog.QueryEvent:
			q, err := binlog.ParseQuery(ev, checksum)
			if err != nil {
				return 0, err
			}
			if !isTxnControl(q.SQL) {
				seen |= seenStatements
			}
		case typ == binlog.QueryCompressedEvent, typ == beginLoadQueryEvent, typ == executeLoadQueryEvent:
			seen |= seenStatements
		}
	}
}

// LOAD DATA logged as a statement.
const (
	beginLoadQueryEvent   = 17
	executeLoadQueryEvent = 18
)

// isRowsEvent reports the row events of MariaDB (v1 and compressed) and
// MySQL (v2).
func isRowsEvent(typ byte) bool {
	switch {
	case typ >= binlog.WriteRowsEventV1 && typ <= binlog.DeleteRowsEventV1:
		return true
	case typ >= 30 && typ <= 32: // WRITE/UPDATE/DELETE_ROWS_EVENT (v2)
		return true
	case typ >= 166 && typ <= binlog.DeleteRowsCompressedV1: // compressed row events
		return true
	}
	return false
}

// isTxnControl reports the statements that a transaction logs in every
// binlog format: BEGIN, COMMIT, ROLLBACK, savepoints and XA.
func isTxnControl(sql string) bool {
	sql = strings.TrimLeftFunc(sql, unicode.IsSpace)
	word := sql[:min(len(sql), 10)]
	if i := strings.IndexFunc(word, unicode.IsSpace); i >= 0 {
		word = word[:i]
	}
	switch strings.ToUpper(word) {
	case "", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "XA":
		return true
	}
	return false
}
