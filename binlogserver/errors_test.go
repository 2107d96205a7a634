package binlogserver

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/understudy-db/understudy"
)

// TestFatalErrorMessage: the ERR packet's message fits the replica's
// 512-byte error text with MariaDB's prefix, cut at a character boundary.
func TestFatalErrorMessage(t *testing.T) {
	long := strings.Repeat("é", 300)
	me := (&fatalError{kind: KindCorrupt, msg: long}).myError()
	if me.Code != mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG || len(me.Message) > maxMessage || !utf8.ValidString(me.Message) || !strings.HasSuffix(me.Message, "...") {
		t.Fatalf("code %d, message of %d bytes (valid UTF-8 %v): %q", me.Code, len(me.Message), utf8.ValidString(me.Message), me.Message)
	}
	if got, want := (&fatalError{msg: "short"}).myError().Message, "short"; got != want {
		t.Fatalf("message %q, want %q", got, want)
	}
}

// TestArchiveError: the archive reader's errors become ERR 1236 of kind
// corrupt when they wrap understudy.ErrCorrupt, else of kind read.
func TestArchiveError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind string
		text string
	}{
		{fmt.Errorf("binlog.000003.idx: record 7 at offset 224: %w: bad checksum", understudy.ErrCorrupt), KindCorrupt,
			"the archive of source db is damaged: binlog.000003.idx: record 7 at offset 224: archive corrupt: bad checksum; run understudy verify"},
		{errors.New("open binlog.000003: permission denied"), KindRead, "the archive of source db cannot be read: open binlog.000003: permission denied"},
		{fatal(KindGap, "a gap"), KindGap, "a gap"},
	} {
		var fe *fatalError
		if !errors.As(archiveError("db", tc.err), &fe) || fe.kind != tc.kind || fe.msg != tc.text {
			t.Errorf("archiveError(%v) = %+v, want kind %s, %q", tc.err, fe, tc.kind, tc.text)
		}
	}
}
