package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestFlagRanges: numeric flags out of range are refused, before anything
// is read or connected, with a message naming the flag and the range.
func TestFlagRanges(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" for accepted (then it fails later, on the config)
	}{
		{[]string{"snapshot", "--threads", "-1"}, "--threads: -1 is not between 1 and 256"},
		{[]string{"snapshot", "--threads", "0"}, "--threads: 0 is not between 1 and 256"},
		{[]string{"snapshot", "--threads", "257"}, "--threads: 257 is not between 1 and 256"},
		{[]string{"snapshot", "--threads", "99999999999999999999"}, `invalid value "99999999999999999999" for flag -threads`},
		{[]string{"snapshot", "--threads", "256"}, ""},
		{[]string{"snapshot"}, ""},
		{[]string{"restore", "--threads", "-1"}, "--threads: -1 is not between 1 and 256"},
		{[]string{"restore", "--threads", "1000"}, "--threads: 1000 is not between 1 and 256"},
		{[]string{"events", "--limit", "-5"}, "--limit: -5 is not between 0 and"},
		{[]string{"events", "--limit", "5"}, ""},
	} {
		args := append(tc.args, "--config", "/nonexistent/understudy.yaml", "--source", "db")
		var so, se bytes.Buffer
		code := run(args, &so, &se)
		if tc.want == "" {
			if strings.Contains(se.String(), "is not between") || code == exitUsage {
				t.Errorf("%v: refused (exit %d): %s", tc.args, code, se.String())
			}
			continue
		}
		oneLine := strings.Count(strings.TrimSpace(se.String()), "\n") == 0 || !strings.Contains(tc.want, "is not between") // the flag package adds its usage
		if code != exitUsage || !strings.Contains(se.String(), tc.want) || !oneLine {
			t.Errorf("%v: exit %d, stderr %q, want exit %d and one line with %q", tc.args, code, se.String(), exitUsage, tc.want)
		}
	}
}
