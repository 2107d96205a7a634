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
	config, source, listen string
	stop                   stopFlags
	debug                  bool
}

// cmdServe runs a one-off binlog server for one source in the foreground,
// optionally held at a stop point.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o serveOptions
	fs := newFlagSet("serve", stderr)
	fs.config(&o.config)
	fs.source(&o.source)
	fs.StringVar(&o.listen, "listen", "", "listen on `HOST:PORT` for replicas")
	fs.defaults["listen"] = "the source's serve.listen"
	fs.stopPoint(&o.stop)
	fs.debug(&o.debug)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stop, err := o.stop.point()
	if err != nil {
		return err
	}
	cfg, s, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	log := newLogger(stderr, o.debug, false)
	d, err := readDirs(ctx, cfg, o.source, true, log)
	if err != nil {
		return err
	}
	if err := d.fetchAllEvicted(ctx); err != nil {
		return err
	}
	if !stop.IsZero() {
		// A replica would otherwise wait forever for a point the archive
		// does not hold.
		a, err := archive.Open(d.dir)
		if err != nil {
			return err
		}
		if err := history.CheckArchived(a, stop); err != nil {
			return fmt.Errorf("source %s: %w", o.source, err)
		}
	}
	bs, err := newBinlogServer(cfg, s, stop, log)
	if err != nil {
		return err
	}
	bs.cfg.Dir = d.dir
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
