package config

import (
	"strings"
	"testing"
)

// TestRanges: every number and duration out of range is refused with a
// message naming the key and the allowed range, never truncated, wrapped
// or taken as it is.
func TestRanges(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"heartbeat 1ns", strings.Replace(good, "heartbeat: 2s", "heartbeat: 1ns", 1), "sources[1].heartbeat: 1ns is not between 100ms and 1h0m0s"},
		{"heartbeat 99ms", strings.Replace(good, "heartbeat: 2s", "heartbeat: 99ms", 1), "sources[1].heartbeat: 99ms is not between 100ms and 1h0m0s"},
		{"heartbeat 2000000h", strings.Replace(good, "heartbeat: 2s", "heartbeat: 2000000h", 1), "sources[1].heartbeat: 2000000h0m0s is not between 100ms and 1h0m0s"},
		{"heartbeat negative", strings.Replace(good, "heartbeat: 2s", "heartbeat: -1s", 1), "sources[1].heartbeat: -1s is not between 100ms and 1h0m0s"},
		{"heartbeat 100ms", strings.Replace(good, "heartbeat: 2s", "heartbeat: 100ms", 1), ""},
		{"heartbeat 1h", strings.Replace(good, "heartbeat: 2s", "heartbeat: 1h", 1), ""},
		{"server_id fraction", strings.Replace(good, "server_id: 9001", "server_id: 9001.7", 1), "line 11: sources[0].server_id: 9001.7 is not a whole number from 1 to 4294967295"},
		{"server_id too large", strings.Replace(good, "server_id: 9001", "server_id: 4294967296", 1), "sources[0].server_id: 4294967296 is not a whole number from 1 to 4294967295"},
		{"server_id negative", strings.Replace(good, "server_id: 9001", "server_id: -1", 1), "sources[0].server_id: -1 is not a whole number from 1 to 4294967295"},
		{"server_id exponent", strings.Replace(good, "server_id: 9001", "server_id: 9.5e0", 1), "sources[0].server_id: 9.5e0 is not a whole number from 1 to 4294967295"},
		{"server_id whole exponent", strings.Replace(good, "server_id: 9001", "server_id: 9.5e3", 1), ""},
		{"server_id float too large", strings.Replace(good, "server_id: 9001", "server_id: 5e9", 1), "sources[0].server_id: 5e9 is not a whole number from 1 to 4294967295"},
		{"port too large", strings.Replace(good, "port: 3306", "port: 70000", 1), "sources[0].port: 70000 is not a TCP port (1..65535)"},
		{"chunk_rows fraction", withDB2("    snapshot:\n      chunk_rows: 1000.5\n"), "sources[1].snapshot.chunk_rows: 1000.5 is not a whole number from 1 to 9223372036854775807"},
		{"chunk_rows exponent", withDB2("    snapshot:\n      chunk_rows: 1e6\n"), ""},
		{"server_id max", strings.Replace(good, "server_id: 9001", "server_id: 4294967295", 1), ""},
		{"port fraction", strings.Replace(good, "port: 3306", "port: 3306.5", 1), "sources[0].port: 3306.5 is not a whole number from 1 to 65535"},
		{"max_file_size overflow", strings.Replace(good, "max_file_size: 64MiB", "max_file_size: 17179869185GiB", 1), `line 4: archive.max_file_size: invalid size "17179869185GiB" (want e.g. 256MiB, below 8EiB)`},
		{"max_file_size int64 overflow", strings.Replace(good, "max_file_size: 64MiB", "max_file_size: 9223372036854775808", 1), `archive.max_file_size: invalid size "9223372036854775808"`},
		{"max_file_size too large", strings.Replace(good, "max_file_size: 64MiB", "max_file_size: 4GiB", 1), "archive.max_file_size: must be between 1MiB and 4095MiB"},
		{"min_free overflow", withArchive("  min_free: 17179869185GiB\n"), `archive.min_free: invalid free space "17179869185GiB"`},
		{"sync_interval 1ns", withArchive("  sync_interval: 1ns\n"), "archive.sync_interval: 1ns is not between 1ms and 1h0m0s"},
		{"sync_interval 2h", withArchive("  sync_interval: 2h\n"), "archive.sync_interval: 2h0m0s is not between 1ms and 1h0m0s"},
		{"threads -1", withDB2("    snapshot:\n      threads: -1\n"), "sources[1].snapshot.threads: -1 is not between 1 and 256"},
		{"threads 257", withDB2("    snapshot:\n      threads: 257\n"), "sources[1].snapshot.threads: 257 is not between 1 and 256"},
		{"threads fraction", withDB2("    snapshot:\n      threads: 2.5\n"), "sources[1].snapshot.threads: 2.5 is not a whole number from 1 to 256"},
		{"threads huge", withDB2("    snapshot:\n      threads: 99999999999999999999\n"), "sources[1].snapshot.threads: 99999999999999999999 is not a whole number from 1 to 256"},
		{"threads 256", withDB2("    snapshot:\n      threads: 256\n"), ""},
		{"every 1ms", withDB2("    snapshot:\n      every: 1ms\n"), "sources[1].snapshot.every: 1ms is less than 1s"},
		{"keep_daily fraction", withDB2("    retention:\n      keep_daily: 1.5\n"), "sources[1].retention.keep_daily: 1.5 is not a whole number"},
		{"serve server_id fraction", withDB2("    serve:\n      listen: 127.0.0.1:3310\n      user: r\n      password: p\n      server_id: 7.5\n"), "sources[1].serve.server_id: 7.5 is not a whole number from 1 to 4294967295"},
	} {
		_, err := Parse("u.yaml", []byte(tc.yaml))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), "u.yaml: ") || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err=%v, want %q", tc.name, err, tc.want)
		}
	}
}
