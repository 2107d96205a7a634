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

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/config"
)

// Exit codes, in one place (printed by the usage, and in the README).
const (
	exitOK    = 0
	exitError = 1 // any other error, in one line on stderr
	exitUsage = 2 // a bad command line
	// exitProblem: verify, check or drill ran and found a problem (a
	// damaged file, a replica that differs, a restore that does not
	// match); the problems are printed.
	exitProblem = 3
	// exitLocked: another process holds the archive (a running `run`).
	exitLocked = 4
	// exitInterrupted: SIGINT or SIGTERM stopped a one-shot command
	// before it finished; running it again resumes where that is
	// possible (restore, provision).
	exitInterrupted = 130
)

// errProblem marks the error of a verify, check or drill that found a
// problem.
var errProblem = errors.New("problem found")

var version = "dev"

func main() {
	stop := startProfile()
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
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
	case errors.Is(err, errProblem):
		fmt.Fprintf(stderr, "understudy %s: %v\n", c.name, err)
		return exitProblem
	case errors.Is(err, understudy.ErrLocked) || errors.Is(err, errRunning):
		fmt.Fprintf(stderr, "understudy %s: %v\n", c.name, err)
		return exitLocked
	case ctx.Err() != nil && c.name != "run" && c.name != "serve":
		fmt.Fprintf(stderr, "understudy %s: interrupted: %v\n", c.name, err)
		return exitInterrupted
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
