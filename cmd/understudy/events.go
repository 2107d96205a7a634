package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/events"
)

func cmdEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfgPath, source, grep, since, until string
	var asJSON bool
	var limit int
	fs := newFlagSet("events", stderr)
	fs.config(&cfgPath)
	fs.source(&source)
	fs.StringVar(&grep, "grep", "", "show the transactions that the regular expression `REGEX` matches (case-insensitive; on statements, tables and kind; ^ and $ match at line starts and ends)")
	fs.StringVar(&since, "since", "", "only transactions committed at or after `T` (RFC 3339, or 'YYYY-MM-DD HH:MM:SS' local time)")
	fs.StringVar(&until, "until", "", "only transactions committed at or before `T`")
	fs.IntVar(&limit, "limit", 0, "stop after `N` transactions (0: no limit)")
	fs.between("limit", 0, math.MaxInt)
	fs.json(&asJSON)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var f events.Filter
	var err error
	if grep != "" {
		if f.Grep, err = regexp.Compile("(?im)" + grep); err != nil {
			return fmt.Errorf("%w: --grep: %v", errUsage, err)
		}
	}
	if since != "" {
		if f.Since, err = parseTime(since); err != nil {
			return fmt.Errorf("%w: --since: %v", errUsage, err)
		}
	}
	if until != "" {
		if f.Until, err = parseTime(until); err != nil {
			return fmt.Errorf("%w: --until: %v", errUsage, err)
		}
	}
	f.Limit = limit
	cfg, _, err := openSource(cfgPath, source)
	if err != nil {
		return err
	}
	d, err := readDirs(ctx, cfg, source, true, newLogger(stderr, false, false))
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
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false) // statements show '<secret>', not '\u003csecret\u003e'
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "GTID\tCOMMITTED\tKIND\tDATABASE\tWHAT")
	}
	err = events.List(a, f, func(t events.Transaction) error {
		if asJSON {
			return enc.Encode(t)
		}
		what := t.Summary()
		if len(t.Statements) > 0 {
			stmt := strings.Join(strings.Fields(t.Statements[0]), " ")
			if len(stmt) > 120 {
				stmt = stmt[:117] + "..."
			}
			if what != "" {
				what += " | "
			}
			what += stmt
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.GTID, t.Time.Format(time.RFC3339), t.Kind, t.Database, what)
		return nil
	})
	tw.Flush()
	return err
}
