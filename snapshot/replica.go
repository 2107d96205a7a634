package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/events"
)

// DefaultMaxLag is how far behind its primary a replica may be for a
// snapshot to be taken from it, when Options.MaxLag is 0.
const DefaultMaxLag = 5 * time.Minute

// checkReplica makes sure the replica replicates from the source: it must
// have one of the source's GTID domains in gtid_slave_pos, and each
// replication connection that may carry the source (see sourceConns)
// must run both its threads and be at most o.MaxLag behind its primary.
// Otherwise the snapshot would be of a replica that stopped following the
// source, or of a state older than the archive's newest by more than the
// operator allows.
func checkReplica(ctx context.Context, c *sql.Conn, o Options) error {
	if len(o.Domains) == 0 {
		return errors.New("snapshot from a replica: the source's GTID domain is unknown (is the source reachable?)")
	}
	var pos string
	if err := c.QueryRowContext(ctx, "SELECT @@global.gtid_slave_pos").Scan(&pos); err != nil {
		return explain(err)
	}
	p, err := understudy.ParsePosition(pos)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(o.Domains, func(d uint32) bool { _, ok := p.Domain(d); return ok }) {
		return fmt.Errorf("%s is not replicating from source %s: its gtid_slave_pos %q has none of the source's GTID domains %v", o.From, o.Source, pos, o.Domains)
	}
	all, err := replicaConns(ctx, c)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		return fmt.Errorf("replica %s has no replication connection (SHOW ALL SLAVES STATUS is empty): it does not follow source %s", o.From, o.Source)
	}
	conns := sourceConns(all, o.Domains, o.SourceAddrs)
	if len(conns) == 0 {
		return fmt.Errorf("replica %s: none of its replication connections (%s) replicates the source's GTID domains %v (Replicate_Do_Domain_Ids/Replicate_Ignore_Domain_Ids)", o.From, connNames(all), o.Domains)
	}
	maxLag := o.MaxLag
	if maxLag <= 0 {
		maxLag = DefaultMaxLag
	}
	for _, r := range conns {
		if r.io != "Yes" || r.sql != "Yes" {
			why := ""
			if r.ioErr != "" {
				why += "; last IO error: " + r.ioErr
			}
			if r.sqlErr != "" {
				why += "; last SQL error: " + r.sqlErr
			}
			return fmt.Errorf("replica %s is not replicating on connection '%s': Slave_IO_Running=%s, Slave_SQL_Running=%s%s", o.From, r.name, r.io, r.sql, why)
		}
		if r.behind < 0 {
			return fmt.Errorf("replica %s, connection '%s': its lag is unknown (Seconds_Behind_Master is NULL)", o.From, r.name)
		}
		if lag := time.Duration(r.behind) * time.Second; lag > maxLag {
			return fmt.Errorf("replica %s is %s behind its primary on connection '%s' (Seconds_Behind_Master), more than the %s allowed (snapshot.from.max_lag)", o.From, lag, r.name, maxLag)
		}
	}
	return nil
}

// replicaConn is one replication connection of a replica, as SHOW ALL
// SLAVES STATUS shows it.
type replicaConn struct {
	name          string
	addr          string // Master_Host:Master_Port
	io, sql       string // Slave_IO_Running, Slave_SQL_Running: Yes, No, Connecting, Preparing
	behind        int64  // Seconds_Behind_Master; -1 for NULL
	ioErr, sqlErr string
	// doDomains and ignoreDomains are the connection's GTID domain filters.
	doDomains, ignoreDomains []uint32
}

// replicaConns reads every replication connection of the server (SHOW ALL
// SLAVES STATUS needs SLAVE MONITOR).
func replicaConns(ctx context.Context, c *sql.Conn) ([]replicaConn, error) {
	rows, err := c.QueryContext(ctx, "SHOW ALL SLAVES STATUS")
	if err != nil {
		return nil, explain(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []replicaConn
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		col := map[string]sql.NullString{}
		for i, name := range cols {
			col[name] = vals[i]
		}
		r := replicaConn{
			name:   col["Connection_name"].String,
			addr:   net.JoinHostPort(col["Master_Host"].String, col["Master_Port"].String),
			io:     col["Slave_IO_Running"].String,
			sql:    col["Slave_SQL_Running"].String,
			behind: -1,
			ioErr:  oneLine(events.RedactMessage(col["Last_IO_Error"].String)),
			sqlErr: oneLine(events.RedactMessage(col["Last_SQL_Error"].String)),
		}
		if b := col["Seconds_Behind_Master"]; b.Valid {
			if r.behind, err = strconv.ParseInt(b.String, 10, 64); err != nil {
				return nil, fmt.Errorf("connection '%s': Seconds_Behind_Master %q: %w", r.name, b.String, err)
			}
		}
		if r.doDomains, err = domainList(col["Replicate_Do_Domain_Ids"].String); err != nil {
			return nil, fmt.Errorf("connection '%s': Replicate_Do_Domain_Ids: %w", r.name, err)
		}
		if r.ignoreDomains, err = domainList(col["Replicate_Ignore_Domain_Ids"].String); err != nil {
			return nil, fmt.Errorf("connection '%s': Replicate_Ignore_Domain_Ids: %w", r.name, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// sourceConns picks the connections that may replicate the source: those
// whose domain filters let one of its domains through and, if any of them
// connects to one of addrs (the primary, its binlog server), only those.
// A replica can reach its primary by another name than understudy does,
// so without such a match every connection that may carry the source's
// domains is checked.
func sourceConns(all []replicaConn, domains []uint32, addrs []string) []replicaConn {
	var may, match []replicaConn
	for _, r := range all {
		if !slices.ContainsFunc(domains, r.passes) {
			continue
		}
		may = append(may, r)
		if slices.Contains(addrs, r.addr) {
			match = append(match, r)
		}
	}
	if len(match) > 0 {
		return match
	}
	return may
}

// passes tells whether the connection's domain filters let domain d
// through.
func (r replicaConn) passes(d uint32) bool {
	if len(r.doDomains) > 0 {
		return slices.Contains(r.doDomains, d)
	}
	return !slices.Contains(r.ignoreDomains, d)
}

func domainList(s string) ([]uint32, error) {
	var out []uint32
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		d, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, err
		}
		out = append(out, uint32(d))
	}
	return out, nil
}

func connNames(conns []replicaConn) string {
	var names []string
	for _, r := range conns {
		names = append(names, "'"+r.name+"'")
	}
	return strings.Join(names, ", ")
}

// oneLine collapses a server message onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
