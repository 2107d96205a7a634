// Package replica makes and keeps live backup replicas: MariaDB servers
// that replicate each source over a named connection of their own (one
// GTID domain a source), fed by understudy's binlog server or by the
// primary. It provisions them from snapshots, checks them against a
// reference at a common GTID, and promotes one when a primary is lost.
//
// Everything understudy does to a server that replicates is here: reading
// SHOW ALL SLAVES STATUS, setting gtid_slave_pos without disturbing other
// domains, naming a replication connection, telling a stopped connection
// from one that reconnects.
package replica

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/events"
)

// Status is one row of SHOW ALL SLAVES STATUS, by column name, with the
// passwords of the statements its errors quote redacted.
type Status map[string]string

// Name is the connection's name ("" for the default connection).
func (s Status) Name() string { return s["Connection_name"] }

// Running says whether both threads run.
func (s Status) Running() bool {
	return s["Slave_IO_Running"] == "Yes" && s["Slave_SQL_Running"] == "Yes"
}

// Failure is why the connection cannot make progress by itself, or "": an
// error of the SQL thread, an IO error of a stopped IO thread or a fatal
// one (the binlog server's ERR 1236, a purged binlog), or both threads
// stopped. An IO error of a running thread is a reconnect that MariaDB
// retries by itself, and is not a failure.
func (s Status) Failure() string {
	var out []string
	if e := s["Last_IO_Error"]; e != "" && (s["Slave_IO_Running"] == "No" || strings.Contains(e, "fatal")) {
		out = append(out, e)
	}
	if e := s["Last_SQL_Error"]; e != "" {
		out = append(out, e)
	}
	if len(out) == 0 && s["Slave_IO_Running"] == "No" && s["Slave_SQL_Running"] == "No" {
		out = append(out, "replication was stopped (STOP SLAVE?)")
	}
	return strings.Join(out, "; ")
}

// Threads are the threads of the connection that run: "IO_THREAD",
// "SQL_THREAD".
func (s Status) Threads() []string {
	var t []string
	if v := s["Slave_IO_Running"]; v != "No" && v != "" {
		t = append(t, "IO_THREAD")
	}
	if s["Slave_SQL_Running"] == "Yes" {
		t = append(t, "SQL_THREAD")
	}
	return t
}

// AllStatus runs SHOW ALL SLAVES STATUS.
func AllStatus(ctx context.Context, db *sql.DB) ([]Status, error) {
	return statusRows(ctx, db, "SHOW ALL SLAVES STATUS")
}

// ConnStatus runs SHOW SLAVE 'name' STATUS; ok is false when there is no
// such connection.
func ConnStatus(ctx context.Context, db *sql.DB, name string) (st Status, ok bool, err error) {
	all, err := AllStatus(ctx, db)
	if err != nil {
		return nil, false, err
	}
	for _, s := range all {
		if strings.EqualFold(s.Name(), name) {
			return s, true, nil
		}
	}
	return nil, false, nil
}

func statusRows(ctx context.Context, db *sql.DB, q string) ([]Status, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []Status
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		st := Status{}
		for i, c := range cols {
			st[c] = vals[i].String
			// An SQL error quotes the statement that failed: an account's
			// password never reaches a message, a log or a summary.
			if strings.HasSuffix(c, "_Error") && st[c] != "" {
				st[c] = events.RedactMessage(st[c])
			}
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// QuoteName quotes a connection name for SHOW SLAVE 'name' STATUS, CHANGE
// MASTER 'name' and the like.
func QuoteName(name string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(name) + "'"
}

// quoteString quotes a string literal.
func quoteString(s string) string { return QuoteName(s) }

// quoteIdent quotes an identifier.
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// GTIDSlavePos reads the server's gtid_slave_pos.
func GTIDSlavePos(ctx context.Context, db *sql.DB) (understudy.Position, error) {
	var s string
	if err := db.QueryRowContext(ctx, "SELECT @@global.gtid_slave_pos").Scan(&s); err != nil {
		return understudy.Position{}, err
	}
	p, err := understudy.ParsePosition(s)
	if err != nil {
		return understudy.Position{}, fmt.Errorf("gtid_slave_pos: %w", err)
	}
	return p, nil
}

// ReplaceDomains returns cur with every GTID domain of pos (and of the
// domains in also) replaced by pos's GTIDs: the domains of other
// primaries, which the server may replicate over connections of its own,
// are kept as they are.
func ReplaceDomains(cur, pos understudy.Position, also ...understudy.Position) understudy.Position {
	ours := map[uint32]bool{}
	for _, p := range append([]understudy.Position{pos}, also...) {
		for _, g := range p.GTIDs() {
			ours[g.Domain] = true
		}
	}
	var keep []understudy.GTID
	for _, g := range cur.GTIDs() {
		if !ours[g.Domain] {
			keep = append(keep, g)
		}
	}
	return understudy.NewPosition(append(keep, pos.GTIDs()...)...)
}

// SetSlavePos sets the server's gtid_slave_pos in the domains of pos (and
// of also) to pos, keeping every other domain. MariaDB sets gtid_slave_pos
// only while no replication thread runs: the server's other running
// connections (except the connections named in skip, which the caller
// manages) are stopped for that moment, their positions read once they
// are stopped, and started again with the threads that ran.
func SetSlavePos(ctx context.Context, db *sql.DB, addr string, pos understudy.Position, also []understudy.Position, skip []string, log *slog.Logger) error {
	all, err := AllStatus(ctx, db)
	if err != nil {
		return fmt.Errorf("%s: SHOW ALL SLAVES STATUS: %w", addr, err)
	}
	running := map[string][]string{}
	for _, s := range all {
		if t := s.Threads(); len(t) > 0 && !containsFold(skip, s.Name()) {
			running[s.Name()] = t
		}
	}
	if len(running) > 0 {
		log.Info("stopping the server's replication connections for a moment to set gtid_slave_pos", "server", addr, "connections", running)
	}
	for name := range running {
		if _, err := db.ExecContext(ctx, "STOP SLAVE "+QuoteName(name)); err != nil {
			return fmt.Errorf("%s: stopping replication connection %s to set gtid_slave_pos: %w", addr, QuoteName(name), err)
		}
	}
	var errs []error
	cur, err := GTIDSlavePos(ctx, db)
	if err == nil {
		q := "SET GLOBAL gtid_slave_pos = '" + ReplaceDomains(cur, pos, also...).String() + "'"
		if _, err = db.ExecContext(ctx, q); err != nil {
			err = fmt.Errorf("%s: %w", q, err)
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	for name, threads := range running {
		if _, err := db.ExecContext(context.WithoutCancel(ctx), "START SLAVE "+QuoteName(name)+" "+strings.Join(threads, ", ")); err != nil {
			errs = append(errs, fmt.Errorf("%s: starting replication connection %s again: %w", addr, QuoteName(name), err))
		}
	}
	return errors.Join(errs...)
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// UserDatabases returns those of dbs that the server has with something
// in them: a table (base, view, sequence, system-versioned), a routine
// (procedure, function, package) or an event. An empty database, such as
// the `test` database of a stock mariadb-install-db, holds nothing a load
// would overwrite.
func UserDatabases(ctx context.Context, db *sql.DB, dbs []string) ([]string, error) {
	var out []string
	for _, d := range dbs {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?) +
			(SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?) +
			(SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?)`, d, d, d).Scan(&n); err != nil {
			return nil, err
		}
		if n > 0 {
			out = append(out, d)
		}
	}
	return out, nil
}

// FacingIP returns this host's address that faces target (HOST:PORT):
// the local address of the route to it, the one the server there reaches
// this host at when no NAT lies between them. A UDP socket connected to
// the target picks that route and sends nothing.
func FacingIP(ctx context.Context, target string) (*net.UDPAddr, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", target)
	if err != nil {
		return nil, fmt.Errorf("finding this host's address that faces the target %s: %w (give --listen and --advertise)", target, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr), nil
}

// ListenAddr is where a binlog server that feeds the server at target
// listens: listen, or by default this host's address that faces the
// target, with a free port.
func ListenAddr(ctx context.Context, listen, target string) (string, error) {
	if listen != "" {
		return listen, nil
	}
	a, err := FacingIP(ctx, target)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort((&net.IPAddr{IP: a.IP, Zone: a.Zone}).String(), "0"), nil
}

// AdvertiseAddr is where the server at target connects to a binlog
// server listening at ln: advertise (HOST, or HOST:PORT), else the
// listener's own address, unless that is unspecified (0.0.0.0, ::): then
// this host's address that faces the target, with the listener's port.
func AdvertiseAddr(ctx context.Context, advertise, target string, ln *net.TCPAddr) (host, port string, err error) {
	port = strconv.Itoa(ln.Port)
	switch {
	case advertise != "":
		h, p, err := net.SplitHostPort(advertise)
		if err != nil { // a host without a port (an IPv6 one included)
			return advertise, port, nil
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("advertise %q: the port is not a number from 1 to 65535", advertise)
		}
		return h, p, nil
	case len(ln.IP) > 0 && !ln.IP.IsUnspecified():
		return ln.IP.String(), port, nil
	}
	a, err := FacingIP(ctx, target)
	if err != nil {
		return "", "", err
	}
	return a.IP.String(), port, nil
}

// DisabledEvents returns the events of dbs (of every database if nil)
// that are DISABLE ON SLAVE on the server (db.name, sorted): the ones a
// load for a replica created so, and those the server received by
// replication.
func DisabledEvents(ctx context.Context, db *sql.DB, dbs []string) ([]string, error) {
	want := map[string]bool{}
	for _, d := range dbs {
		want[d] = true
	}
	rows, err := db.QueryContext(ctx, "SELECT EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS WHERE STATUS = 'SLAVESIDE_DISABLED'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var d, n string
		if err := rows.Scan(&d, &n); err != nil {
			return nil, err
		}
		if dbs == nil || want[d] {
			out = append(out, d+"."+n)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}
