package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/archive"
	"github.com/understudy-db/understudy/config"
	"github.com/understudy-db/understudy/history"
)

// retentionPolicy turns a source's resolved retention into a policy.
func retentionPolicy(cfg *config.Config, s *config.Source) history.Policy {
	r := cfg.ResolveRetention(s)
	if !r.Enabled {
		return history.Policy{}
	}
	return history.Policy{Window: r.Window, MinSnapshots: r.MinSnapshots, KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly,
		KeepMonthly: r.KeepMonthly, KeepLast: r.KeepLast, PruneBinlogs: r.PruneBinlogs}
}

// pruneOutsideRun applies retention from a command (not `understudy run`):
// it opens the archive's writer for the binlog files, and when `run` holds
// the archive, removes only snapshots (run prunes the files itself).
func pruneOutsideRun(ctx context.Context, cfg *config.Config, s *config.Source, log *slog.Logger) (pruneReport, error) {
	w, err := archive.OpenWriter(cfg.SourceDir(s.Name), archive.WriterOptions{Logger: log})
	switch {
	case errors.Is(err, understudy.ErrLocked):
		w = nil
	case err != nil:
		return pruneReport{}, err
	default:
		defer w.Close()
	}
	return pruneSource(ctx, cfg, s, w, false, log)
}
