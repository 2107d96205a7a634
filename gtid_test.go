package understudy

import "testing"

func TestParsePosition(t *testing.T) {
	p, err := ParsePosition("1-2-7, 0-1-100")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "0-1-100,1-2-7"; got != want {
		t.Fatalf("String()=%q, want %q", got, want)
	}
	if !p.Contains(GTID{0, 5, 99}) || p.Contains(GTID{0, 1, 101}) || p.Contains(GTID{2, 1, 1}) {
		t.Fatalf("Contains wrong for %s", p)
	}
	q := p.With(GTID{0, 1, 101}).With(GTID{5, 1, 1})
	if got, want := q.String(), "0-1-101,1-2-7,5-1-1"; got != want {
		t.Fatalf("With: %q, want %q", got, want)
	}
	if got, want := p.String(), "0-1-100,1-2-7"; got != want {
		t.Fatalf("With changed the receiver: %q", got)
	}
	for _, bad := range []string{"0-1", "a-b-c", "0-1-1,0-2-2", "-1-1-1"} {
		if _, err := ParsePosition(bad); err == nil {
			t.Errorf("ParsePosition(%q) accepted", bad)
		}
	}
	empty, err := ParsePosition("")
	if err != nil || !empty.IsZero() {
		t.Fatalf("empty position: %v %v", empty, err)
	}
}
