// Command understudy follows MariaDB primaries as a replica and keeps every
// transaction in a durable binlog archive.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/understudy-db/understudy/config"
)

// Exit codes, in one place.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitDifferent: check found the replica different from the
	// reference (the tables and keys are printed).
	exitDifferent = 3
)

var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error caused by the command line.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return exitUsage
	}
	switch args[0] {
	case "version", "--version":
		fmt.Fprintln(stdout, "understudy", version)
		return exitOK
	case "help", "-h", "--help":
		if len(args) == 1 || args[0] != "help" {
			fmt.Fprint(stdout, usage())
			return exitOK
		}
		c, n, ok := findCommand(args[1:])
		if !ok || n != len(args)-1 {
			fmt.Fprintf(stderr, "understudy help: unknown command %q\n\n%s", strings.Join(args[1:], " "), usage())
			return exitUsage
		}
		c.flags().writeUsage(stdout)
		return exitOK
	}
	c, n, ok := findCommand(args)
	if !ok {
		var near []string // "binlog" alone: "binlog export"
		for _, c := range commands() {
			if strings.HasPrefix(c.name, args[0]+" ") {
				near = append(near, "understudy "+c.name)
			}
		}
		if len(near) > 0 {
			fmt.Fprintf(stderr, "understudy: unknown command %q: did you mean %s? (understudy help %s)\n", strings.Join(args[:min(2, len(args))], " "), strings.Join(near, ", or "), strings.TrimPrefix(near[0], "understudy "))
			return exitUsage
		}
		fmt.Fprintf(stderr, "understudy: unknown command %q\n\n%s", args[0], usage())
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := c.run(ctx, args[n:], stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errDifferent):
		fmt.Fprintf(stderr, "understudy %s: %v\n", c.name, err)
		return exitDifferent
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "understudy %s: %v\n", c.name, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "understudy %s: %v\n", c.name, err)
		return exitError
	}
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
