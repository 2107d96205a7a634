package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/understudy-db/understudy/replication"
	"github.com/understudy-db/understudy/restore"
)

type restoreOptions struct {
	config, source                     string
	target                             serverFlags
	stop                               stopFlags
	databases, listen, advertise, snap string
	threads                            int
	force, users, json, debug          bool
}

func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o restoreOptions
	fs := newFlagSet("restore", stderr)
	fs.config(&o.config)
	fs.source(&o.source)
	fs.target(&o.target)
	fs.stopPoint(&o.stop)
	fs.StringVar(&o.snap, "snapshot", "", "restore from the snapshot `ID` (default: the newest before the point)")
	fs.StringVar(&o.databases, "databases", "", "restore only the databases `LIST`, comma-separated (default: every database of the snapshot)")
	fs.threads(&o.threads, 4, "")
	fs.BoolVar(&o.force, "force", false, "replace databases that already exist on the target")
	fs.BoolVar(&o.users, "users", false, "also create the snapshot's accounts and roles with their grants (snapshot.users)")
	fs.feed(&o.listen, &o.advertise)
	fs.json(&o.json)
	fs.debug(&o.debug)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stop, err := o.stop.point()
	if err != nil {
		return err
	}
	tsrc, err := o.target.source()
	if err != nil {
		return err
	}
	cfg, _, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	db, err := replication.Open(tsrc, "")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(o.threads + 4)
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("target %s: %w", tsrc.Addr(), err)
	}
	var dbs []string
	if o.databases != "" {
		for _, d := range strings.Split(o.databases, ",") {
			if d = strings.TrimSpace(d); d != "" {
				dbs = append(dbs, d)
			}
		}
	}
	bar := newProgressBar(stderr)
	log := newLogger(stderr, o.debug, false)
	if bar.on {
		log = newLogger(io.Discard, false, false)
	}
	d, err := readDirs(ctx, cfg, o.source, false, log)
	if err != nil {
		return err
	}
	stage := ""
	res, err := restore.Run(ctx, restore.Options{
		Source: o.source, ArchiveDir: d.dir, SnapshotRoot: d.snapRoot, Fetch: d.fetch,
		Target: db, TargetAddr: tsrc.Addr(), Stop: stop, SnapshotID: o.snap, Databases: dbs, Force: o.force, Users: o.users, Threads: o.threads,
		Listen: o.listen, Advertise: o.advertise, Log: log,
		Progress: func(s string, done, total int64) {
			if s != stage && stage != "" {
				bar.done()
				bar.start = time.Now()
			}
			stage = s
			bar.update(fmt.Sprintf("%-6s", s), done, total, fmt.Sprintf("%d/%d", done, total))
		},
	})
	bar.done()
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "restored %s into %s: snapshot %s (%s) + %d transactions replayed, now at GTID position %s (load %s, replay %s)\n",
		o.source, tsrc.Addr(), res.Snapshot, res.SnapshotPos, res.Transactions, res.Position, res.Load.Round(time.Millisecond), res.Replay.Round(time.Millisecond))
	if res.Verified >= 0 {
		fmt.Fprintf(stdout, "verified: %d chunk checksums equal the snapshot's\n", res.Verified)
	}
	if len(res.DisabledEvents) > 0 {
		fmt.Fprintf(stdout, "events disabled on this server, as on a replica (they run on the source): %s; once it takes over: ALTER EVENT <name> ENABLE\n", strings.Join(res.DisabledEvents, ", "))
	}
	return nil
}
