package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/history"
)

type exportOptions struct {
	config, source, dir string
	stop                stopFlags
	json                bool
}

func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o exportOptions
	fs := newFlagSet("binlog export", stderr)
	fs.config(&o.config)
	fs.source(&o.source)
	fs.outDir(&o.dir)
	fs.stopPoint(&o.stop)
	fs.json(&o.json)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	stop, err := o.stop.point()
	if err != nil {
		return err
	}
	cfg, _, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	d, err := readDirs(ctx, cfg, o.source, true, newLogger(stderr, false, false))
	if err != nil {
		return err
	}
	if err := d.fetchAllEvicted(ctx); err != nil {
		return err
	}
	a, err := archive.Open(d.dir)
	if err != nil {
		return err
	}
	// Refused before anything is written.
	if err := history.CheckArchived(a, stop); err != nil {
		return fmt.Errorf("source %s: %w", o.source, err)
	}
	res, err := archive.Export(a, o.dir, stop)
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"files": res.Files, "transactions": res.Transactions, "bytes": res.Bytes,
			"gtid_position": res.Position.String(), "stop": stop.String(),
		})
	}
	fmt.Fprintf(stdout, "exported %d transactions (%s) in %d files to %s, ending at GTID position %s\n",
		res.Transactions, humanBytes(res.Bytes), len(res.Files), o.dir, res.Position)
	return nil
}
