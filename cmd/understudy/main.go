// Command understudy follows MariaDB primaries as a replica and keeps every
// transaction in a durable binlog archive.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/understudy-db/understudy/config"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// Exit codes, in one place.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `understudy: replication-based backup for MariaDB

Usage:
  understudy run    --config understudy.yaml [--until-caught-up]
                                                 archive every source until SIGTERM
  understudy status --config understudy.yaml [--json]
  understudy info   --config understudy.yaml [--source NAME] [--json]
                                                 generations, gaps, restore windows, snapshots, disk
  understudy prune  --config understudy.yaml [--source NAME] [--dry-run] [--json]
                                                 apply retention (run does it by itself)
  understudy serve  --config understudy.yaml --source NAME [--listen ADDR]
                    [--until-gtid G | --until-time T | --before-gtid G]
  understudy snapshot  --config understudy.yaml --source NAME [--threads N] [--json]
  understudy snapshots --config understudy.yaml --source NAME [--json]
  understudy events    --config understudy.yaml --source NAME [--grep REGEX] [--since T] [--until T] [--json]
  understudy restore   --config understudy.yaml --source NAME --target USER@HOST:PORT
                    [--until-time T | --until-gtid G | --before-gtid G] [--databases a,b] [--force]
  understudy verify    --config understudy.yaml --source NAME [--json]
  understudy binlog export --config understudy.yaml --source NAME --dir OUT
                    [--until-gtid G | --until-time T | --before-gtid G] [--json]
  understudy version

Run "understudy <command> -h" for a command's flags.
`

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error caused by the command line.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "status":
		err = cmdStatus(ctx, args[1:], stdout, stderr)
	case "info":
		err = cmdInfo(ctx, args[1:], stdout, stderr)
	case "prune":
		err = cmdPrune(ctx, args[1:], stdout, stderr)
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "snapshot":
		err = cmdSnapshot(ctx, args[1:], stdout, stderr)
	case "snapshots":
		err = cmdSnapshots(ctx, args[1:], stdout, stderr)
	case "restore":
		err = cmdRestore(ctx, args[1:], stdout, stderr)
	case "events":
		err = cmdEvents(ctx, args[1:], stdout, stderr)
	case "verify":
		err = cmdVerify(ctx, args[1:], stdout, stderr)
	case "binlog":
		if len(args) < 2 || args[1] != "export" {
			fmt.Fprint(stderr, "usage: understudy binlog export --config F --source NAME --dir OUT\n")
			return exitUsage
		}
		err = cmdExport(ctx, args[2:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "understudy", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "understudy: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "understudy %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "understudy %s: %v\n", args[0], err)
		return exitError
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("understudy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// flagRange checks that an integer flag, when given, lies in [lo, hi].
func flagRange(fs *flag.FlagSet, name string, lo, hi int) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if f.Name != name {
			return
		}
		if v, perr := strconv.Atoi(f.Value.String()); perr != nil || v < lo || v > hi {
			err = fmt.Errorf("%w: --%s: %s is not between %d and %d", errUsage, name, f.Value, lo, hi)
		}
	})
	return err
}

func newLogger(w io.Writer, debug, asJSON bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// openSource loads the config and finds a source in it.
func openSource(path, name string) (*config.Config, *config.Source, error) {
	if name == "" {
		return nil, nil, fmt.Errorf("%w: --source is required", errUsage)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	s, err := cfg.Source(name)
	if err != nil {
		return nil, nil, err
	}
	return cfg, s, nil
}
