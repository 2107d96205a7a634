package replica

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlogserver"
)

// PromoteOptions configures Promote.
type PromoteOptions struct {
	Target     *sql.DB
	TargetAddr string
	// Source is the source whose primary is lost; its connection on the
	// target is named like it.
	Source     string
	ArchiveDir string
	// Listen is where the binlog server that feeds the target the
	// archive's last transactions listens (default: this host's address
	// facing the target, a free port); Advertise the host the target
	// connects to (default: the listen host).
	Listen, Advertise string
	DryRun            bool
	Log               *slog.Logger
	// Progress reports the transactions fed.
	Progress func(done, total int64)
}

// PromoteResult says what Promote did, or would do with DryRun.
type PromoteResult struct {
	Source string `json:"source"`
	Target string `json:"target"`
	DryRun bool   `json:"dry_run"`
	// Archive is the archive's last durable position in the source's
	// domains; Before the target's position there when promote began.
	Archive understudy.Position `json:"archive_gtid_position"`
	Before  understudy.Position `json:"target_gtid_position_before"`
	// Fed counts the transactions the target lacked and got from the
	// archive.
	Fed int64 `json:"transactions_fed"`
	// DomainID is the gtid_domain_id the target writes with from now on.
	DomainID uint32 `json:"gtid_domain_id"`
	// Position is the target's gtid_binlog_pos after the promotion.
	Position string   `json:"gtid_binlog_pos"`
	Steps    []string `json:"steps"`
	Warnings []string `json:"warnings,omitempty"`
	// DisabledEvents are the target's events (db.name) that are DISABLE
	// ON SLAVE, as a replica's are, after the promotion (with DryRun,
	// before it): ALTER EVENT … ENABLE turns on those of the source.
	DisabledEvents []string `json:"events_disabled_on_replica,omitempty"`
}

// Promote makes the target the primary of a source whose primary is lost
// (or rehearses it): it checks the target as failover managers do, feeds
// it every transaction of the source that the archive holds and the
// target lacks (with semi-sync, every acknowledged one), removes the
// source's connection, makes the target write in the source's GTID domain
// and turns read_only off. With DryRun it checks and says what it would
// do.
func Promote(ctx context.Context, o PromoteOptions) (PromoteResult, error) {
	res := PromoteResult{Source: o.Source, Target: o.TargetAddr, DryRun: o.DryRun}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(int64, int64) {}
	}
	t, addr, name := o.Target, o.TargetAddr, QuoteName(o.Source)
	a, err := archive.Open(o.ArchiveDir)
	if err != nil {
		return res, fmt.Errorf("source %s: %w", o.Source, err)
	}
	res.Archive = a.Position()
	var domains []uint32
	for _, g := range res.Archive.GTIDs() {
		domains = append(domains, g.Domain)
	}
	if len(domains) == 0 {
		return res, fmt.Errorf("source %s: the archive holds no transaction", o.Source)
	}

	// Pre-checks, each failure named.
	st, ok, err := ConnStatus(ctx, t, o.Source)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", addr, err)
	}
	if !ok {
		return res, fmt.Errorf("target %s has no replication connection %s: it does not replicate source %s (see `understudy provision`)", addr, name, o.Source)
	}
	if e := st["Last_SQL_Error"]; e != "" {
		return res, fmt.Errorf("target %s: the connection %s stopped on an error, so the target's data is not the source's: %s", addr, name, e)
	}
	// A connection with replication filters left part of the source out:
	// the target does not hold the source's data.
	for _, f := range []string{"Replicate_Do_DB", "Replicate_Ignore_DB", "Replicate_Do_Table", "Replicate_Ignore_Table", "Replicate_Wild_Do_Table", "Replicate_Wild_Ignore_Table", "Replicate_Do_Domain_Ids", "Replicate_Ignore_Domain_Ids", "Replicate_Ignore_Server_Ids"} {
		if v := st[f]; v != "" {
			return res, fmt.Errorf("target %s: the connection %s has a replication filter (%s: %s), so the target lacks part of source %s: it cannot take over as its primary", addr, name, f, v, o.Source)
		}
	}
	var logBin, logSlaveUpdates, strict int
	var binlogPos string
	if err := t.QueryRowContext(ctx, "SELECT @@log_bin, @@log_slave_updates, @@gtid_strict_mode, @@global.gtid_binlog_pos").Scan(&logBin, &logSlaveUpdates, &strict, &binlogPos); err != nil {
		return res, fmt.Errorf("target %s: %w", addr, err)
	}
	if logBin == 0 {
		return res, fmt.Errorf("target %s has log_bin OFF: as a primary it would have no binlog for replicas and for understudy (set log_bin and restart it first)", addr)
	}
	if logSlaveUpdates == 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("target %s has log_slave_updates OFF: its binlog lacks the replicated transactions, so replicas of the new primary and understudy can only start from the promotion on", addr))
	}
	if strict == 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("target %s has gtid_strict_mode OFF: errant transactions would go unnoticed", addr))
	}
	// An errant transaction: one the target wrote itself in the source's
	// domains, which the archive does not have.
	bp, err := understudy.ParsePosition(binlogPos)
	if err != nil {
		return res, fmt.Errorf("target %s: gtid_binlog_pos: %w", addr, err)
	}
	for _, g := range bp.Only(domains).GTIDs() {
		if !res.Archive.Contains(g) {
			return res, fmt.Errorf("target %s has transaction %s in source %s's domain that the archive (at %s) does not have: an errant transaction on the replica; promotion would lose or fork it", addr, g, o.Source, res.Archive)
		}
	}
	cur, err := GTIDSlavePos(ctx, t)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", addr, err)
	}
	res.Before = cur.Only(domains)
	total := behind(res.Before, res.Archive)
	res.DomainID = domains[0]
	if len(domains) > 1 {
		return res, fmt.Errorf("source %s writes %d GTID domains (%s): promote makes a target write in one domain", o.Source, len(domains), res.Archive)
	}
	res.Steps = []string{
		fmt.Sprintf("feed %d transactions that the archive has and the target lacks (%s to %s), from a binlog server over the archive", total, res.Before, res.Archive),
		fmt.Sprintf("STOP SLAVE %s; RESET SLAVE %s ALL", name, name),
		fmt.Sprintf("SET GLOBAL gtid_domain_id = %d (the source's domain: the archive goes on in it)", res.DomainID),
		"SET GLOBAL read_only = OFF",
	}
	// Events of the source that ran there reached the target DISABLE ON
	// SLAVE (by replication, or by the load that provisioned it). Whose
	// they are, on a replica of several sources, the DBA knows. Listed
	// again after the promotion: the fed tail may create more.
	if res.DisabledEvents, err = DisabledEvents(ctx, t, nil); err != nil {
		return res, fmt.Errorf("target %s: %w", addr, err)
	}
	if w := disabledWarning(addr, o.Source, res.DisabledEvents); w != "" {
		res.Warnings = append(res.Warnings, w)
	}
	for _, w := range res.Warnings {
		o.Log.Warn(w)
	}
	if o.DryRun {
		return res, nil
	}

	// Feed the target the archive's tail.
	if !cur.ContainsPosition(res.Archive) {
		if err := feed(ctx, o, res.Archive, total); err != nil {
			return res, err
		}
	}
	res.Fed = total
	for _, q := range []string{"STOP SLAVE " + name, "RESET SLAVE " + name + " ALL",
		fmt.Sprintf("SET GLOBAL gtid_domain_id = %d", res.DomainID), "SET GLOBAL read_only = OFF"} {
		if _, err := t.ExecContext(ctx, q); err != nil {
			return res, fmt.Errorf("target %s: %s: %w", addr, q, err)
		}
	}
	if err := t.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&res.Position); err != nil {
		return res, fmt.Errorf("target %s: %w", addr, err)
	}
	before := disabledWarning(addr, o.Source, res.DisabledEvents)
	if res.DisabledEvents, err = DisabledEvents(ctx, t, nil); err != nil {
		return res, fmt.Errorf("target %s: %w", addr, err)
	}
	if w := disabledWarning(addr, o.Source, res.DisabledEvents); w != before {
		o.Log.Warn(w)
		for i := range res.Warnings {
			if res.Warnings[i] == before {
				res.Warnings = append(res.Warnings[:i], res.Warnings[i+1:]...)
				break
			}
		}
		res.Warnings = append(res.Warnings, w)
	}
	o.Log.Info("promoted", "source", o.Source, "target", addr, "gtid_binlog_pos", res.Position)
	return res, nil
}

// disabledWarning is the warning for a promoted target's events that are
// DISABLE ON SLAVE ("" for none).
func disabledWarning(addr, source string, events []string) string {
	if len(events) == 0 {
		return ""
	}
	return fmt.Sprintf("target %s has events DISABLE ON SLAVE, as a replica does: %s; enable source %s's with ALTER EVENT <name> ENABLE once it takes over", addr, strings.Join(events, ", "), source)
}

// feed points the source's connection at an in-process binlog server
// over the archive, held at the archive's end, and waits until the target
// has applied everything up to it.
func feed(ctx context.Context, o PromoteOptions, end understudy.Position, total int64) error {
	t, addr, name := o.Target, o.TargetAddr, QuoteName(o.Source)
	pw := make([]byte, 16)
	rand.Read(pw)
	password := hex.EncodeToString(pw)
	var serverID uint32
	if err := t.QueryRowContext(ctx, "SELECT @@server_id").Scan(&serverID); err != nil {
		return fmt.Errorf("target %s: %w", addr, err)
	}
	bsID := uint32(4000000011)
	if bsID == serverID {
		bsID++
	}
	srv, err := binlogserver.New(binlogserver.Config{Source: o.Source, Dir: o.ArchiveDir, User: "understudy_promote", Password: password,
		ServerID: bsID, Stop: understudy.StopPoint{UntilGTID: end}, Logger: o.Log})
	if err != nil {
		return err
	}
	listen, err := ListenAddr(ctx, o.Listen, addr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s for the target: %w", listen, err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	defer func() { stop(); <-served }()
	host, port, err := AdvertiseAddr(ctx, o.Advertise, addr, ln.Addr().(*net.TCPAddr))
	if err != nil {
		return err
	}
	for _, q := range []string{"STOP SLAVE " + name,
		fmt.Sprintf("CHANGE MASTER %s TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER='understudy_promote', MASTER_PASSWORD='%s', MASTER_SSL=0, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
			name, quoteString(host), port, password),
		"START SLAVE " + name} {
		if _, err := t.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("target %s: %s: %w", addr, redactPassword(q), err)
		}
	}
	o.Log.Info("feeding the target the archive's last transactions", "target", addr, "binlog_server", ln.Addr().String(), "until", end.String())
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		cur, err := GTIDSlavePos(ctx, t)
		if err != nil {
			return fmt.Errorf("target %s: %w", addr, err)
		}
		o.Progress(total-behind(cur, end), total)
		if cur.ContainsPosition(end) {
			return nil
		}
		st, ok, err := ConnStatus(ctx, t, o.Source)
		if err != nil {
			return fmt.Errorf("target %s: %w", addr, err)
		}
		if !ok {
			return fmt.Errorf("target %s: the connection %s is gone", addr, name)
		}
		if f := st.Failure(); f != "" {
			return fmt.Errorf("target %s: feeding the archive's last transactions stopped: %s", addr, f)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
