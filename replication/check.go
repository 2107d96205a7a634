package replication

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/understudy-db/understudy"
)

// Primary is what Check learned about a primary.
type Primary struct {
	Version        string
	ServerID       uint32
	DomainID       uint32
	BinlogFormat   string
	BinlogPos      understudy.Position
	SemiSync       bool // rpl_semi_sync_master_enabled
	ClockSkew      time.Duration
	BinlogChecksum string
}

// Check connects to the primary with an ordinary client connection and
// verifies what streaming needs: credentials, binary logging, the
// REPLICATION SLAVE privilege and a server_id different from ours. Its
// errors are one line with a hint at the fix; warnings are returned for the
// caller to log.
func Check(ctx context.Context, src understudy.Source) (Primary, []string, error) {
	db, err := Open(src, "")
	if err != nil {
		return Primary{}, nil, err
	}
	defer db.Close()
	// The connect and login get ConnectTimeout: a primary behind a dead
	// network is reported within it, and retried.
	cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	conn, err := db.Conn(cctx)
	cancel()
	if err != nil {
		return Primary{}, nil, sqlError(src, err)
	}
	defer conn.Close()
	ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var p Primary
	var logBin int
	var gtidPos string
	var now int64
	before := time.Now()
	err = conn.QueryRowContext(ctx, `SELECT @@version, @@server_id, @@gtid_domain_id, @@log_bin, @@binlog_format, @@global.gtid_binlog_pos, @@binlog_checksum, UNIX_TIMESTAMP()`).
		Scan(&p.Version, &p.ServerID, &p.DomainID, &logBin, &p.BinlogFormat, &gtidPos, &p.BinlogChecksum, &now)
	if err != nil {
		return p, nil, sqlError(src, err)
	}
	p.ClockSkew = time.Unix(now, 0).Sub(before.Add(time.Since(before) / 2)).Truncate(time.Second)
	if logBin == 0 {
		return p, nil, &understudy.Error{Op: "check " + src.Addr(), Err: withCause(errors.New("binary logging is disabled on the primary (log_bin=OFF)"), ErrNoBinlog), Hint: "start mariadbd with --log-bin and a unique --server-id"}
	}
	if p.ServerID == src.ServerID {
		return p, nil, &understudy.Error{Op: "check " + src.Addr(), Err: withCause(fmt.Errorf("the primary's server_id is %d, the same as understudy's server_id", p.ServerID), ErrServerID), Hint: "give the source another server_id in the config"}
	}
	if p.BinlogPos, err = understudy.ParsePosition(gtidPos); err != nil {
		return p, nil, err
	}
	if err := checkGrants(ctx, conn, src); err != nil {
		return p, nil, err
	}
	var warnings []string
	if !strings.EqualFold(p.BinlogFormat, "ROW") {
		warnings = append(warnings, fmt.Sprintf("binlog_format is %s on %s, not ROW: statement-based events replay correctly only when the statements are deterministic", p.BinlogFormat, src.Addr()))
	}
	var name, val string
	if err := conn.QueryRowContext(ctx, `SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_master_enabled'`).Scan(&name, &val); err == nil {
		p.SemiSync = strings.EqualFold(val, "ON")
	}
	if src.SemiSync && !p.SemiSync {
		warnings = append(warnings, fmt.Sprintf("semi_sync is set for %s but rpl_semi_sync_master_enabled is OFF there: transactions are archived asynchronously", src.Addr()))
	}
	return p, warnings, nil
}

// checkGrants looks for REPLICATION SLAVE (or ALL PRIVILEGES) on *.*.
func checkGrants(ctx context.Context, db *sql.Conn, src understudy.Source) error {
	rows, err := db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return sqlError(src, err)
	}
	defer rows.Close()
	var all []string
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return sqlError(src, err)
		}
		all = append(all, strings.ToUpper(g))
	}
	if err := rows.Err(); err != nil {
		return sqlError(src, err)
	}
	for _, g := range all {
		if !strings.Contains(g, " ON *.* ") {
			continue
		}
		if strings.Contains(g, "ALL PRIVILEGES") || strings.Contains(g, "REPLICATION SLAVE") || strings.Contains(g, "REPLICATION REPLICA") {
			return nil
		}
	}
	return &understudy.Error{Op: "check " + src.Addr(), Err: withCause(fmt.Errorf("user %q lacks the REPLICATION SLAVE privilege", src.User), ErrPrivilege),
		Hint: fmt.Sprintf("run GRANT REPLICATION SLAVE ON *.* TO '%s'@'<understudy host>' on the primary", src.User)}
}

// Open opens a database/sql handle to the source with its credentials and
// TLS settings, without registering anything globally.
func Open(src understudy.Source, database string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = src.User, src.Password
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", src.Addr(), database
	cfg.Timeout = 10 * time.Second
	cfg.TLS = src.TLS
	cfg.ParseTime = false
	cfg.InterpolateParams = true
	cfg.DialFunc = dialBuffered
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	return db, nil
}

// dialBuffered dials with a 256 KiB read buffer and a large socket receive
// buffer. The driver reads at most 4 KiB per system call; a snapshot or a
// checksum scan streams hundreds of megabytes, and with the larger buffers
// the reader makes far fewer calls and the server writes in larger bursts.
func dialBuffered(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 20)
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, 256<<10)}, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// SyscallConn lets the driver check a pooled connection's socket before
// reusing it (a connection the server closed is then replaced, not
// failed). Between statements the buffer is empty, so the socket is all
// there is to check.
func (c *bufferedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a system connection")
	}
	return sc.SyscallConn()
}

func sqlError(src understudy.Source, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return describe(src, int(me.Number), me.Message, err)
	}
	return connectError(src, err)
}
