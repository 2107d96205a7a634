package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-db/understudy"
	"github.com/understudy-db/understudy/config"
)

// A command is one of understudy's commands. Its function registers its
// flags with newFlagSet (and the flag methods below) and parses them before
// it does anything else: the usage texts are made from the flags it
// registers, so that none is left out.
type command struct {
	name    string // as typed: "restore", "binlog export"
	summary string // one line
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the commands in the order of the usage text. Adding one
// is a line here and a file with its function, which begins like this:
//
//	var o struct{ config, source string; target serverFlags; json bool }
//	fs := newFlagSet("provision", stderr)
//	fs.config(&o.config)
//	fs.source(&o.source)
//	fs.target(&o.target)
//	fs.json(&o.json)
//	if err := parseFlags(fs, args); err != nil {
//		return err
//	}
//	tsrc, err := o.target.source()
func commands() []command {
	return []command{
		{"run", "archive every source until SIGTERM (or, with --until-caught-up, until caught up)", cmdRun},
		{"status", "state, GTID position, restore windows, gaps and disk of every source", cmdStatus},
		{"info", "generations, gaps, restore windows, snapshots, files and disk", cmdInfo},
		{"prune", "apply retention now (run does it by itself)", cmdPrune},
		{"serve", "serve a source's archive to MariaDB replicas, held at the stop point if one is given", cmdServe},
		{"snapshot", "take a snapshot of a source", cmdSnapshot},
		{"snapshots", "list a source's snapshots", cmdSnapshots},
		{"events", "describe archived transactions, to find the bad one", cmdEvents},
		{"restore", "restore a source into a server at a point: load a snapshot, then replay the archive", cmdRestore},
		{"provision", "make a server a live backup replica of one or more sources (a --source each): load their snapshots, verify them, replicate from the archive", cmdProvision},
		{"check", "compare a live replica with the source at a GTID position, held for a moment, naming the rows that differ", cmdCheck},
		{"promote", "make a backup replica the primary of a lost source, with every transaction of the archive", cmdPromote},
		{"drill", "prove that a source's backups restore: restore its snapshots on an empty server, replay the archive between them and verify the result (run does it on drill.every)", cmdDrill},
		{"verify", "check every CRC, sha256, index record and GTID of the archive and of its snapshots", cmdVerify},
		{"binlog export", "write binlog files up to a point, for mariadb-binlog | mariadb", cmdExport},
		{"keygen", "write a new age key pair for encryption at rest (storage.encryption): DIR/age.key, the identity (mode 0600), needed only where backups are read; DIR/age.pub, the recipient, all the archiving host needs. Never overwrites a key", cmdKeygen},
	}
}

// findCommand returns the command that args begin with, and how many of
// args name it.
func findCommand(args []string) (command, int, bool) {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, len(words), true
		}
	}
	return command{}, 0, false
}

// flags returns the flags c registers. It runs c with -h: c registers its
// flags, the flag package prints the usage (into the collector) and c
// returns flag.ErrHelp before it does anything else.
func (c command) flags() *flagSet {
	col := &flagCollector{}
	c.run(context.Background(), []string{"-h"}, io.Discard, col)
	if col.f == nil {
		return newFlagSet(c.name, io.Discard) // a command without flags
	}
	return col.f
}

// flagCollector is the stderr of a command run by command.flags: the flag
// set made with it is kept, and whatever is written is dropped.
type flagCollector struct{ f *flagSet }

func (c *flagCollector) Write(b []byte) (int, error) { return len(b), nil }

// flagSet is a command's flags: a flag.FlagSet that also knows what its
// usage text shows and parseFlags checks: the order of registration, the
// required flags, the alternatives and the ranges of numbers.
type flagSet struct {
	*flag.FlagSet
	name         string
	order        []string
	required     []string
	alternatives [][]string        // shown as [--a A | --b B]
	bounds       []flagBounds      // checked by parseFlags
	defaults     map[string]string // a default that the flag's zero value stands for
}

type flagBounds struct {
	name   string
	lo, hi int
}

func newFlagSet(name string, stderr io.Writer) *flagSet {
	f := &flagSet{FlagSet: flag.NewFlagSet("understudy "+name, flag.ContinueOnError), name: name, defaults: map[string]string{}}
	f.SetOutput(stderr)
	f.Usage = func() { f.writeUsage(f.Output()) }
	if c, ok := stderr.(*flagCollector); ok {
		c.f = f
	}
	return f
}

// StringVar, BoolVar and IntVar register a flag as the flag package does,
// and keep the order for the usage text. A `NAME` in backquotes in the
// help text names the flag's value.
func (f *flagSet) StringVar(p *string, name, value, usage string) {
	f.FlagSet.StringVar(p, name, value, usage)
	f.order = append(f.order, name)
}

func (f *flagSet) BoolVar(p *bool, name string, value bool, usage string) {
	f.FlagSet.BoolVar(p, name, value, usage)
	f.order = append(f.order, name)
}

func (f *flagSet) IntVar(p *int, name string, value int, usage string) {
	f.FlagSet.IntVar(p, name, value, usage)
	f.order = append(f.order, name)
}

// require marks flags that must be given (not empty).
func (f *flagSet) require(names ...string) { f.required = append(f.required, names...) }

// between makes parseFlags refuse an integer flag outside [lo, hi] when it
// is given.
func (f *flagSet) between(name string, lo, hi int) {
	f.bounds = append(f.bounds, flagBounds{name, lo, hi})
}

// The flags that several commands share, each with its one help text.

func (f *flagSet) config(p *string) {
	f.StringVar(p, "config", "understudy.yaml", "read the configuration from `FILE`")
}

const sourceHelp = "the source `NAME`, as in the configuration"

// source registers a required --source.
func (f *flagSet) source(p *string) {
	f.StringVar(p, "source", "", sourceHelp)
	f.require("source")
}

// sourceOrEvery registers a --source that defaults to every source.
func (f *flagSet) sourceOrEvery(p *string) {
	f.StringVar(p, "source", "", sourceHelp)
	f.defaults["source"] = "every source"
}

// feed registers where the binlog server that feeds a target from the
// archive listens (--listen) and where the target connects to it
// (--advertise).
func (f *flagSet) feed(listen, advertise *string) {
	f.StringVar(listen, "listen", "", "the binlog server that feeds the target listens on `HOST:PORT` (default: this host's address that faces the target, a free port; behind a NAT or in a container, 0.0.0.0 and a port the target can reach)")
	f.StringVar(advertise, "advertise", "", "the target connects to the binlog server at `HOST` or HOST:PORT (default: the --listen host, or when that is 0.0.0.0 or :: or none, this host's address that faces the target)")
}

// outDir registers the required --dir of a command that writes files
// (binlog export, keygen).
func (f *flagSet) outDir(p *string) {
	f.StringVar(p, "dir", "", "write into the directory `DIR`")
	f.require("dir")
}

// stringList is a flag given once per value.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// sources registers a required --source that may be given several times.
func (f *flagSet) sources(p *stringList) {
	f.Var(p, "source", sourceHelp)
	f.order = append(f.order, "source")
	f.require("source")
}

func (f *flagSet) dryRun(p *bool) {
	f.BoolVar(p, "dry-run", false, "say what would be done, and change nothing")
}

func (f *flagSet) json(p *bool) { f.BoolVar(p, "json", false, "print JSON instead of text") }

func (f *flagSet) debug(p *bool) { f.BoolVar(p, "debug", false, "log at debug level") }

// threads registers --threads with a default of def; when def is 0, what
// the command does without the flag is defText.
func (f *flagSet) threads(p *int, def int, defText string) {
	f.IntVar(p, "threads", def, fmt.Sprintf("how many threads work in parallel, `N` from 1 to %d", config.MaxThreads))
	f.between("threads", 1, config.MaxThreads)
	if defText != "" {
		f.defaults["threads"] = defText
	}
}

// stopFlags are the flags of a stop point; at most one may be given.
type stopFlags struct{ untilGTID, untilTime, beforeGTID string }

func (f *flagSet) stopPoint(p *stopFlags) {
	f.StringVar(&p.untilGTID, "until-gtid", "", "stop point: up to the GTID position `G`, inclusive (1-1-5012, or 1-1-5012,2-2-17 for several domains)")
	f.StringVar(&p.untilTime, "until-time", "", "stop point: up to the last transaction committed at or before `T` (RFC 3339, or 'YYYY-MM-DD HH:MM:SS' local time)")
	f.StringVar(&p.beforeGTID, "before-gtid", "", "stop point: up to just before the transaction with GTID `G` (the bad one)")
	f.alternatives = append(f.alternatives, []string{"until-gtid", "until-time", "before-gtid"})
}

// point parses the stop point given, the zero StopPoint if none.
func (p stopFlags) point() (understudy.StopPoint, error) {
	var s understudy.StopPoint
	var err error
	if p.untilGTID != "" {
		if s.UntilGTID, err = understudy.ParsePosition(p.untilGTID); err != nil {
			return s, fmt.Errorf("%w: --until-gtid: %v", errUsage, err)
		}
	}
	if p.beforeGTID != "" {
		if s.BeforeGTID, err = understudy.ParseGTID(p.beforeGTID); err != nil {
			return s, fmt.Errorf("%w: --before-gtid: %v", errUsage, err)
		}
	}
	if p.untilTime != "" {
		if s.UntilTime, err = parseTime(p.untilTime); err != nil {
			return s, fmt.Errorf("%w: --until-time: %v", errUsage, err)
		}
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("%w: %v", errUsage, err)
	}
	return s, nil
}

// parseTime accepts RFC 3339, or "YYYY-MM-DD HH:MM:SS" in local time.
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

// serverFlags name a server on the command line (the target of a restore,
// a replica, a scratch server), where its password comes from, and its
// TLS settings: its own, never a source's.
type serverFlags struct {
	name, env                                  string // "target", "UNDERSTUDY_TARGET_PASSWORD"
	addr, passwordFile, tlsCA, tlsCert, tlsKey string
	tls                                        bool
}

// target registers the required --target.
func (f *flagSet) target(p *serverFlags) {
	f.server(p, "target", "UNDERSTUDY_TARGET_PASSWORD", "the target server")
	f.require("target")
}

// server registers --NAME, --NAME-password-file and the TLS flags of a
// server; its password comes from the environment variable env.
func (f *flagSet) server(p *serverFlags, name, env, what string) {
	p.name, p.env = name, env
	f.StringVar(&p.addr, name, "", what+", `USER@HOST:PORT`; its password comes from $"+env+" or --"+name+"-password-file, never from the command line")
	f.StringVar(&p.passwordFile, name+"-password-file", "", "read the "+name+" user's password from `FILE`")
	f.BoolVar(&p.tls, name+"-tls", false, "connect to the "+name+" with TLS, its certificate verified against the system's CAs")
	f.StringVar(&p.tlsCA, name+"-tls-ca", "", "connect to the "+name+" with TLS, its certificate verified against the CA certificates in `FILE`")
	f.StringVar(&p.tlsCert, name+"-tls-cert", "", "present the client certificate in `FILE` to the "+name+" (with --"+name+"-tls-key)")
	f.StringVar(&p.tlsKey, name+"-tls-key", "", "the key of --"+name+"-tls-cert, in `FILE`")
}

// source parses USER@HOST:PORT, reads the password and builds the TLS
// settings.
func (p serverFlags) source() (understudy.Source, error) {
	s := p.addr
	at := strings.LastIndex(s, "@")
	if at <= 0 {
		return understudy.Source{}, fmt.Errorf("%w: --%s %q: want USER@HOST:PORT", errUsage, p.name, s)
	}
	host, port, err := net.SplitHostPort(s[at+1:])
	if err != nil {
		return understudy.Source{}, fmt.Errorf("%w: --%s %q: want USER@HOST:PORT", errUsage, p.name, s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return understudy.Source{}, fmt.Errorf("%w: --%s %q: bad port", errUsage, p.name, s)
	}
	src := understudy.Source{Name: p.name, User: s[:at], Host: host, Port: n}
	switch {
	case p.passwordFile != "":
		b, err := os.ReadFile(p.passwordFile)
		if err != nil {
			return src, fmt.Errorf("--%s-password-file: %w", p.name, err)
		}
		src.Password = strings.TrimRight(string(b), "\r\n")
	default:
		src.Password = os.Getenv(p.env)
	}
	if (p.tlsCert == "") != (p.tlsKey == "") {
		return src, fmt.Errorf("%w: --%s-tls-cert and --%s-tls-key go together", errUsage, p.name, p.name)
	}
	if p.tls || p.tlsCA != "" || p.tlsCert != "" {
		tc := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if p.tlsCA != "" {
			pem, err := os.ReadFile(p.tlsCA)
			if err != nil {
				return src, fmt.Errorf("--%s-tls-ca: %w", p.name, err)
			}
			if tc.RootCAs = x509.NewCertPool(); !tc.RootCAs.AppendCertsFromPEM(pem) {
				return src, fmt.Errorf("--%s-tls-ca: no PEM certificate in %s", p.name, p.tlsCA)
			}
		}
		if p.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(p.tlsCert, p.tlsKey)
			if err != nil {
				return src, fmt.Errorf("--%s-tls-cert/--%s-tls-key: %w", p.name, p.name, err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		src.TLS = tc
	}
	return src, nil
}

// parseFlags parses args, then checks the ranges of the numbers given and
// that the required flags are there. Every error is a usage error.
func parseFlags(f *flagSet, args []string) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if f.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, f.Arg(0))
	}
	for _, b := range f.bounds {
		if err := flagRange(f.FlagSet, b.name, b.lo, b.hi); err != nil {
			return err
		}
	}
	var missing []string
	for _, name := range f.required {
		if f.Lookup(name).Value.String() == "" {
			missing = append(missing, "--"+name)
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%w: %s is required", errUsage, missing[0])
	default:
		return fmt.Errorf("%w: %s and %s are required", errUsage, strings.Join(missing[:len(missing)-1], ", "), missing[len(missing)-1])
	}
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

// all returns every flag: those registered through the methods above in
// their order, then any other in the flag package's order.
func (f *flagSet) all() []*flag.Flag {
	var out []*flag.Flag
	seen := map[string]bool{}
	for _, name := range f.order {
		if !seen[name] {
			seen[name] = true
			out = append(out, f.Lookup(name))
		}
	}
	f.VisitAll(func(fl *flag.Flag) {
		if !seen[fl.Name] {
			out = append(out, fl)
		}
	})
	return out
}

// flagText is "--name VALUE", or "--name" for a boolean flag.
func flagText(fl *flag.Flag) string {
	if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "--" + fl.Name
	}
	name, _ := flag.UnquoteUsage(fl)
	if name == "string" || name == "" {
		name = "value"
	}
	return "--" + fl.Name + " " + strings.ToUpper(name)
}

// synopsis returns the command line with every flag, word by word: the
// required flags, then the others in brackets, with alternatives together.
func (f *flagSet) synopsis() []string {
	required := map[string]bool{}
	var out []string
	for _, name := range f.required {
		required[name] = true
		out = append(out, flagText(f.Lookup(name)))
	}
	done := map[string]bool{}
	for _, fl := range f.all() {
		if required[fl.Name] || done[fl.Name] {
			continue
		}
		group := []string{fl.Name}
		for _, alt := range f.alternatives {
			if alt[0] == fl.Name {
				group = alt
			}
		}
		var texts []string
		for _, name := range group {
			done[name] = true
			texts = append(texts, flagText(f.Lookup(name)))
		}
		out = append(out, "["+strings.Join(texts, " | ")+"]")
	}
	return out
}

// writeUsage writes the command's usage: its command line, its summary,
// and every flag with its help text.
func (f *flagSet) writeUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Usage:\n")
	wrap(&b, "  understudy "+f.name, f.synopsis(), "      ")
	if c, _, ok := findCommand(strings.Fields(f.name)); ok {
		fmt.Fprintf(&b, "\n%s.\n", sentence(c.summary))
	}
	b.WriteString("\nFlags:\n")
	required := map[string]bool{}
	for _, name := range f.required {
		required[name] = true
	}
	for _, fl := range f.all() {
		_, help := flag.UnquoteUsage(fl)
		switch d := f.defaults[fl.Name]; {
		case required[fl.Name]:
			help += " (required)"
		case d != "":
			help += " (default: " + d + ")"
		case fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "false":
			help += " (default: " + fl.DefValue + ")"
		}
		fmt.Fprintf(&b, "  %s\n", flagText(fl))
		wrap(&b, "     ", strings.Fields(help), "      ")
	}
	io.WriteString(w, b.String())
}

// usage is the top-level usage text: every command with every flag.
func usage() string {
	var b strings.Builder
	b.WriteString("understudy: replication-based backup for MariaDB\n\nUsage:\n")
	for _, c := range commands() {
		wrap(&b, "  understudy "+c.name, c.flags().synopsis(), "      ")
		fmt.Fprintf(&b, "      %s.\n\n", sentence(c.summary))
	}
	b.WriteString("  understudy help [COMMAND]\n      This text, or a command's flags with their help (also: understudy COMMAND -h).\n\n")
	b.WriteString("  understudy version\n      Print the version.\n\n")
	fmt.Fprintf(&b, "Exit status: %d done, %d error, %d bad command line, %d verify, check or drill found a problem,\n%d archive locked by another process (a running `run`), %d interrupted (run it again to resume).\n",
		exitOK, exitError, exitUsage, exitProblem, exitLocked, exitInterrupted)
	return b.String()
}

// sentence capitalizes s.
func sentence(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// wrap writes first and the words after it, wrapped at 90 columns, with
// indent before every line after the first.
func wrap(b *strings.Builder, first string, words []string, indent string) {
	line := first
	for _, w := range words {
		if len(line)+1+len(w) > 90 && strings.TrimSpace(line) != "" {
			b.WriteString(line + "\n")
			line = indent + w
			continue
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
}
