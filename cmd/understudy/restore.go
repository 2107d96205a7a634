package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/replication"
	"github.com/understudy-db/understudy/restore"
)

type restoreOptions struct {
	config, source, target, passwordFile string
	untilGTID, untilTime, beforeGTID     string
	databases, listen, advertise, snap   string
	threads                              int
	force, users, json, debug            bool
}

func cmdRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o restoreOptions
	fs := newFlagSet("restore", stderr)
	fs.StringVar(&o.config, "config", "understudy.yaml", "config file")
	fs.StringVar(&o.source, "source", "", "source name (required)")
	fs.StringVar(&o.target, "target", "", "USER@HOST:PORT of the server to restore into (required); password from $UNDERSTUDY_TARGET_PASSWORD or --target-password-file")
	fs.StringVar(&o.passwordFile, "target-password-file", "", "file holding the target user's password")
	fs.StringVar(&o.untilGTID, "until-gtid", "", "restore up to this GTID position (inclusive)")
	fs.StringVar(&o.untilTime, "until-time", "", "restore transactions committed up to this time")
	fs.StringVar(&o.beforeGTID, "before-gtid", "", "restore everything before this GTID (the bad transaction)")
	fs.StringVar(&o.snap, "snapshot", "", "restore from this snapshot ID (default: the newest before the point)")
	fs.StringVar(&o.databases, "databases", "", "comma-separated databases to restore (default: all in the snapshot)")
	fs.IntVar(&o.threads, "threads", 4, "parallel loaders and replication applier threads")
	fs.BoolVar(&o.force, "force", false, "replace databases that already exist on the target")
	fs.BoolVar(&o.users, "users", false, "also create the snapshot's accounts and roles with their grants (snapshot.users)")
	fs.StringVar(&o.listen, "listen", "", "where understudy's binlog server listens for the target (default 127.0.0.1:0; set it for a remote target)")
	fs.StringVar(&o.advertise, "advertise", "", "host the target connects to (default: the listen host)")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.BoolVar(&o.debug, "debug", false, "debug logging")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := flagRange(fs, "threads", 1, config.MaxThreads); err != nil {
		return err
	}
	if o.source == "" || o.target == "" {
		return fmt.Errorf("%w: --source and --target are required", errUsage)
	}
	stop, err := parseStopPoint(o.untilGTID, o.untilTime, o.beforeGTID)
	if err != nil {
		return err
	}
	tsrc, err := parseTarget(o.target, o.passwordFile)
	if err != nil {
		return err
	}
	if o.listen == "" && !isLoopback(tsrc.Host) {
		return fmt.Errorf("%w: the target %s is not on this host: give --listen (e.g. 0.0.0.0:3399) and --advertise (this host's address as the target sees it)", errUsage, tsrc.Addr())
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
	stage := ""
	res, err := restore.Run(ctx, restore.Options{
		Source: o.source, ArchiveDir: cfg.SourceDir(o.source), SnapshotRoot: cfg.SnapshotDir(o.source),
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
	return nil
}

// parseTarget parses USER@HOST:PORT; the password never comes from argv.
func parseTarget(s, passwordFile string) (understudy.Source, error) {
	at := strings.LastIndex(s, "@")
	if at <= 0 {
		return understudy.Source{}, fmt.Errorf("%w: --target %q: want USER@HOST:PORT", errUsage, s)
	}
	host, port, err := net.SplitHostPort(s[at+1:])
	if err != nil {
		return understudy.Source{}, fmt.Errorf("%w: --target %q: want USER@HOST:PORT", errUsage, s)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return understudy.Source{}, fmt.Errorf("%w: --target %q: bad port", errUsage, s)
	}
	src := understudy.Source{Name: "target", User: s[:at], Host: host, Port: p}
	switch {
	case passwordFile != "":
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			return src, fmt.Errorf("--target-password-file: %w", err)
		}
		src.Password = strings.TrimRight(string(b), "\r\n")
	default:
		src.Password = os.Getenv("UNDERSTUDY_TARGET_PASSWORD")
	}
	return src, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
