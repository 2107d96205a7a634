package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/history"
)

type exportOptions struct {
	config, source, dir              string
	untilGTID, untilTime, beforeGTID string
	json                             bool
}

func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o exportOptions
	fs := newFlagSet("binlog export", stderr)
	fs.StringVar(&o.config, "config", "understudy.yaml", "config file")
	fs.StringVar(&o.source, "source", "", "source name (required)")
	fs.StringVar(&o.dir, "dir", "", "output directory (required)")
	fs.StringVar(&o.untilGTID, "until-gtid", "", "stop after this GTID position (inclusive)")
	fs.StringVar(&o.untilTime, "until-time", "", "stop after the last transaction committed at or before this time (RFC 3339, or 'YYYY-MM-DD HH:MM:SS' local time)")
	fs.StringVar(&o.beforeGTID, "before-gtid", "", "stop just before this GTID")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.source == "" || o.dir == "" {
		return fmt.Errorf("%w: --source and --dir are required", errUsage)
	}
	stop, err := parseStopPoint(o.untilGTID, o.untilTime, o.beforeGTID)
	if err != nil {
		return err
	}
	cfg, _, err := openSource(o.config, o.source)
	if err != nil {
		return err
	}
	a, err := archive.Open(cfg.SourceDir(o.source))
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

func parseStopPoint(untilGTID, untilTime, beforeGTID string) (understudy.StopPoint, error) {
	var s understudy.StopPoint
	var err error
	if untilGTID != "" {
		if s.UntilGTID, err = understudy.ParsePosition(untilGTID); err != nil {
			return s, fmt.Errorf("%w: --until-gtid: %v", errUsage, err)
		}
	}
	if beforeGTID != "" {
		if s.BeforeGTID, err = understudy.ParseGTID(beforeGTID); err != nil {
			return s, fmt.Errorf("%w: --before-gtid: %v", errUsage, err)
		}
	}
	if untilTime != "" {
		if s.UntilTime, err = parseTime(untilTime); err != nil {
			return s, fmt.Errorf("%w: --until-time: %v", errUsage, err)
		}
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%w: %v", errUsage, err)
	}
	return s, nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (want RFC 3339 such as 2026-11-22T14:00:00Z, or 'YYYY-MM-DD HH:MM:SS')", s)
}
