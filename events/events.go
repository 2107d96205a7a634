// Package events describes archived transactions for people looking for
// the bad one: GTID, commit time, kind, database, statement text and rows
// changed per table. It reads the archive through its index.
package events

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/binlog"
	"github.com/understudy-db/understudy/replication"
)

// Transaction describes one archived transaction.
type Transaction struct {
	GTID     string    `json:"gtid"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"` // DDL or DML
	Database string    `json:"database,omitempty"`
	// Statements are the statement texts: DDL and statement-based events,
	// and the original SQL of row events (ANNOTATE_ROWS), with the
	// secrets of account statements redacted (see Redact).
	Statements []string `json:"statements,omitempty"`
	// Rows counts changed rows per table and kind, e.g. "app.t": {"delete": 1000}.
	Rows map[string]map[string]int `json:"rows,omitempty"`
	File string                    `json:"file"`
	Pos  uint32                    `json:"position"`
}

// Filter selects transactions.
type Filter struct {
	Since, Until time.Time
	// Grep matches, case-insensitively, statements, table names, the
	// database and the kind.
	Grep  *regexp.Regexp
	Limit int
}

// List walks the archive and calls fn for every matching transaction, in
// archive order.
func List(a *archive.Archive, f Filter, fn func(Transaction) error) error {
	n := 0
	for _, fi := range a.Files() {
		if fi.Transactions == 0 || (!f.Since.IsZero() && fi.LastTime != 0 && int64(fi.LastTime) < f.Since.Unix()) {
			continue
		}
		if !f.Until.IsZero() && int64(fi.FirstTime) > f.Until.Unix() {
			break
		}
		recs, err := a.Records(fi)
		if err != nil {
			return err
		}
		r, err := a.OpenFile(fi)
		if err != nil {
			return err
		}
		dec := replication.NewRowsDecoder()
		if _, _, err := dec.Decode(r.FormatDescription); err != nil {
			r.Close()
			return err
		}
		for _, rec := range recs {
			if !f.Since.IsZero() && int64(rec.Time) < f.Since.Unix() {
				continue
			}
			if !f.Until.IsZero() && int64(rec.Time) > f.Until.Unix() {
				r.Close()
				return nil
			}
			t, err := describe(r, dec, fi.Name, rec)
			if err != nil {
				r.Close()
				return fmt.Errorf("%s at %d: %w", fi.Name, rec.Start, err)
			}
			if f.Grep != nil && !f.Grep.MatchString(t.text()) {
				continue
			}
			if err := fn(t); err != nil {
				r.Close()
				return err
			}
			n++
			if f.Limit > 0 && n >= f.Limit {
				r.Close()
				return nil
			}
		}
		r.Close()
	}
	return nil
}

func (t Transaction) text() string {
	var b strings.Builder
	b.WriteString(t.Kind + " " + t.Database + "\n")
	for _, s := range t.Statements {
		b.WriteString(s + "\n")
	}
	for tbl := range t.Rows {
		b.WriteString(tbl + "\n")
	}
	return b.String()
}

func describe(r *archive.FileReader, dec *replication.RowsDecoder, file string, rec archive.Record) (Transaction, error) {
	t := Transaction{GTID: rec.GTID.String(), Time: time.Unix(int64(rec.Time), 0).UTC(), Kind: "DML", File: file, Pos: rec.Start}
	er := r.Events(int64(rec.Start), int64(rec.End))
	for er.Offset() < int64(rec.End) {
		ev, err := er.Next()
		if err != nil {
			return t, err
		}
		switch ev[4] {
		case binlog.GTIDEvent:
			gi, err := binlog.ParseGTIDEvent(ev, r.Checksum)
			if err != nil {
				return t, err
			}
			if gi.Flags&binlog.GTIDDDL != 0 {
				t.Kind = "DDL"
			}
		case binlog.QueryEvent:
			q, err := binlog.ParseQuery(ev, r.Checksum)
			if err != nil {
				return t, err
			}
			switch strings.ToUpper(q.SQL) {
			case "BEGIN", "COMMIT", "ROLLBACK":
				continue
			}
			t.Statements = append(t.Statements, Redact(q.SQL))
			if t.Database == "" {
				t.Database = q.Database
			}
		case binlog.AnnotateRowsEvent:
			t.Statements = append(t.Statements, Redact(string(binlog.Body(ev, r.Checksum))))
		case binlog.TableMapEvent, binlog.WriteRowsEventV1, binlog.UpdateRowsEventV1, binlog.DeleteRowsEventV1, 30, 31, 32,
			binlog.WriteRowsCompressedV1, binlog.UpdateRowsCompressedV1, binlog.DeleteRowsCompressedV1:
			c, ok, err := dec.Decode(ev)
			if err != nil {
				return t, err
			}
			if ok {
				if t.Rows == nil {
					t.Rows = map[string]map[string]int{}
				}
				key := c.Database + "." + c.Table
				if t.Rows[key] == nil {
					t.Rows[key] = map[string]int{}
				}
				t.Rows[key][c.Kind] += c.Rows
				if t.Database == "" {
					t.Database = c.Database
				}
			}
		}
	}
	return t, nil
}

// Summary is a one-line description of the rows changed.
func (t Transaction) Summary() string {
	var parts []string
	for tbl, kinds := range t.Rows {
		var ks []string
		for k, n := range kinds {
			ks = append(ks, fmt.Sprintf("%d %s", n, map[string]string{"insert": "inserted", "update": "updated", "delete": "deleted"}[k]))
		}
		sort.Strings(ks)
		parts = append(parts, tbl+": "+strings.Join(ks, ", "))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
