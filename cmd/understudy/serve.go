package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlogserver"
	"github.com/understudy-db/understudy/history"
)

type serveOptions struct {
	config, source, listen           string
	untilGTID, untilTime, beforeGTID string
	debug                            bool
}

// cmdServe runs a one-off binlog server for one source in the foreground,
// optionally held at a stop point.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o serveOptions
	fs := newFlagSet("serve", stderr)
	fs.StringVar(&o.config, "config", "understudy.yaml", "config file")
	fs.StringVar(&o.source, "source", "", "source name (required)")
	fs.StringVar(&o.listen, "listen", "", "host:port to listen on (default: the source's serve.listen)")
	fs.StringVar(&o.untilGTID, "until-gtid", "", "serve up to this GTID position (inclusive), then hold")
	fs.StringVar(&o.untilTime, "until-time", "", "serve transactions committed up to this time, then hold")
	fs.StringVar(&o.beforeGTID, "before-gtid", "", "serve everything before this GTID, then hold")
	fs.BoolVar(&o.debug, "debug", false, "debug logging")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.source == "" {
		return fmt.Errorf("%w: --source is required", errUsage)
	}
	stop, err := parseStopPoint(o.untilGTID, o.untilTime, o.beforeGTID)
	if err != nil {
		return err
	}
	cfg, s, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	if !stop.IsZero() {
		// A replica would otherwise wait forever for a point the archive
		// does not hold.
		a, err := archive.Open(cfg.SourceDir(o.source))
		if err != nil {
			return err
		}
		if err := history.CheckArchived(a, stop); err != nil {
			return fmt.Errorf("source %s: %w", o.source, err)
		}
	}
	bs, err := newBinlogServer(cfg, s, stop, newLogger(stderr, o.debug, false))
	if err != nil {
		return err
	}
	if o.listen != "" {
		bs.listen = o.listen
	}
	srv, err := binlogserver.New(bs.cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", bs.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", bs.listen, err)
	}
	fmt.Fprintf(stdout, "serving the archive of %s on %s (%s); stop with Ctrl-C\n", o.source, ln.Addr(), stop)
	return srv.Serve(ctx, ln)
}
