package main

import (
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"
)

// TestUsageListsEveryFlag: the top-level usage (understudy help, or no
// arguments) lists every command; for every command, its usage
// (understudy COMMAND -h, understudy help COMMAND) shows every flag it
// registers with its help text, and its entry in the top-level usage
// names every flag too. A flag that several commands share has one help
// text.
func TestUsageListsEveryFlag(t *testing.T) {
	var top, se strings.Builder
	if code := run([]string{"help"}, &top, &se); code != exitOK {
		t.Fatalf("understudy help: exit %d: %s", code, se.String())
	}
	var bare strings.Builder
	if code := run(nil, io.Discard, &bare); code != exitUsage || bare.String() != top.String() {
		t.Fatalf("understudy without arguments: exit %d, want %d and the usage of understudy help:\n%s", code, exitUsage, bare.String())
	}
	entries := topEntries(top.String())
	for _, name := range []string{"help", "version"} {
		if entries[name] == "" {
			t.Errorf("the usage does not list understudy %s:\n%s", name, top.String())
		}
	}
	helps := map[string]string{} // flag → its help text, and in which command
	for _, c := range commands() {
		f := c.flags()
		if f.name != c.name {
			t.Errorf("command %q registers its flags as %q", c.name, f.name)
		}
		entry := entries[c.name]
		if entry == "" {
			t.Errorf("the usage does not list understudy %s:\n%s", c.name, top.String())
		}
		var h, hs strings.Builder
		if code := run(append(strings.Fields(c.name), "-h"), &h, &hs); code != exitOK {
			t.Fatalf("understudy %s -h: exit %d: %s", c.name, code, h.String()+hs.String())
		}
		var hc strings.Builder
		if code := run(append([]string{"help"}, strings.Fields(c.name)...), &hc, io.Discard); code != exitOK || hc.String() != hs.String() {
			t.Errorf("understudy help %s: exit %d, and not the text of understudy %s -h:\n%s", c.name, code, c.name, hc.String())
		}
		usage := strings.Join(strings.Fields(hs.String()), " ")
		n := 0
		f.VisitAll(func(fl *flag.Flag) {
			n++
			named := regexp.MustCompile(`(?m)--` + regexp.QuoteMeta(fl.Name) + `([ \]]|$)`)
			if !named.MatchString(entry) {
				t.Errorf("the usage's entry of understudy %s lacks --%s:\n%s", c.name, fl.Name, entry)
			}
			_, help := flag.UnquoteUsage(fl)
			if !named.MatchString(hs.String()) || !strings.Contains(usage, strings.Join(strings.Fields(help), " ")) {
				t.Errorf("understudy %s -h lacks --%s with its help %q:\n%s", c.name, fl.Name, help, hs.String())
			}
			// --listen is the one flag whose meaning differs: serve's
			// replicas and restore's target.
			if prev, ok := helps[fl.Name]; ok && fl.Name != "listen" && !strings.HasPrefix(prev, fl.Usage+"\x00") {
				t.Errorf("--%s has two help texts: %q (%s) and %q (%s)", fl.Name, strings.Split(prev, "\x00")[0], strings.Split(prev, "\x00")[1], fl.Usage, c.name)
			}
			helps[fl.Name] = fl.Usage + "\x00" + c.name
		})
		if n == 0 {
			t.Errorf("understudy %s registers no flags", c.name)
		}
	}
	t.Logf("understudy help:\n%s", top.String())
}

// topEntries splits the top-level usage into its entries, by command:
// each begins with "  understudy COMMAND" and holds its flags.
func topEntries(usage string) map[string]string {
	out := map[string]string{}
	names := []string{"help", "version"}
	for _, c := range commands() {
		names = append(names, c.name)
	}
	for _, block := range strings.Split(usage, "\n  understudy ")[1:] {
		for _, name := range names {
			if block == name || strings.HasPrefix(block, name+" ") || strings.HasPrefix(block, name+"\n") {
				out[name] = "understudy " + block
			}
		}
	}
	return out
}
