package understudy

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// GTID is one MariaDB global transaction id: domain-server-sequence.
type GTID struct {
	Domain   uint32
	ServerID uint32
	Seq      uint64
}

// ParseGTID parses "domain-server-seq".
func ParseGTID(s string) (GTID, error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 3 {
		return GTID{}, fmt.Errorf("invalid GTID %q: want domain-server-sequence, e.g. 0-1-42", s)
	}
	d, err1 := strconv.ParseUint(parts[0], 10, 32)
	srv, err2 := strconv.ParseUint(parts[1], 10, 32)
	seq, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return GTID{}, fmt.Errorf("invalid GTID %q: want domain-server-sequence, e.g. 0-1-42", s)
	}
	return GTID{Domain: uint32(d), ServerID: uint32(srv), Seq: seq}, nil
}

func (g GTID) String() string {
	return strconv.FormatUint(uint64(g.Domain), 10) + "-" + strconv.FormatUint(uint64(g.ServerID), 10) + "-" + strconv.FormatUint(g.Seq, 10)
}

// IsZero reports whether g is the zero GTID.
func (g GTID) IsZero() bool { return g == GTID{} }

// Position is a MariaDB GTID position: at most one GTID per domain, sorted by
// domain. It is an immutable value; methods that change it return a copy.
type Position struct {
	gtids []GTID
}

// ParsePosition parses a MariaDB GTID position such as "0-1-100,1-2-7".
// The empty string is the empty position.
func ParsePosition(s string) (Position, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Position{}, nil
	}
	var p Position
	seen := map[uint32]bool{}
	for _, part := range strings.Split(s, ",") {
		g, err := ParseGTID(part)
		if err != nil {
			return Position{}, err
		}
		if seen[g.Domain] {
			return Position{}, fmt.Errorf("invalid GTID position %q: domain %d appears twice", s, g.Domain)
		}
		seen[g.Domain] = true
		p.gtids = append(p.gtids, g)
	}
	sort.Slice(p.gtids, func(i, j int) bool { return p.gtids[i].Domain < p.gtids[j].Domain })
	return p, nil
}

// NewPosition builds a position from GTIDs; a later GTID for a domain wins.
func NewPosition(gtids ...GTID) Position {
	var p Position
	for _, g := range gtids {
		p = p.With(g)
	}
	return p
}

// String returns the MariaDB notation, domains in ascending order.
func (p Position) String() string {
	var b strings.Builder
	for i, g := range p.gtids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(g.String())
	}
	return b.String()
}

// IsZero reports whether p holds no GTID.
func (p Position) IsZero() bool { return len(p.gtids) == 0 }

// GTIDs returns a copy of the GTIDs, sorted by domain.
func (p Position) GTIDs() []GTID { return append([]GTID(nil), p.gtids...) }

// Domain returns the GTID of a domain, if the position has one.
func (p Position) Domain(d uint32) (GTID, bool) {
	i := sort.Search(len(p.gtids), func(i int) bool { return p.gtids[i].Domain >= d })
	if i < len(p.gtids) && p.gtids[i].Domain == d {
		return p.gtids[i], true
	}
	return GTID{}, false
}

// Only returns the GTIDs of p in the given domains.
func (p Position) Only(domains []uint32) Position {
	var out []GTID
	for _, g := range p.gtids {
		if slices.Contains(domains, g.Domain) {
			out = append(out, g)
		}
	}
	return Position{gtids: out}
}

// With returns a copy of p where g is the GTID of its domain.
func (p Position) With(g GTID) Position {
	i := sort.Search(len(p.gtids), func(i int) bool { return p.gtids[i].Domain >= g.Domain })
	out := make([]GTID, 0, len(p.gtids)+1)
	out = append(out, p.gtids[:i]...)
	out = append(out, g)
	if i < len(p.gtids) && p.gtids[i].Domain == g.Domain {
		i++
	}
	out = append(out, p.gtids[i:]...)
	return Position{gtids: out}
}

// Contains reports whether the transaction g is at or before p: p has g's
// domain with a sequence number of at least g.Seq.
func (p Position) Contains(g GTID) bool {
	have, ok := p.Domain(g.Domain)
	return ok && have.Seq >= g.Seq
}

// ContainsPosition reports whether every GTID of q is contained in p.
func (p Position) ContainsPosition(q Position) bool {
	for _, g := range q.gtids {
		if !p.Contains(g) {
			return false
		}
	}
	return true
}

// Equal reports whether p and q hold the same GTIDs.
func (p Position) Equal(q Position) bool {
	if len(p.gtids) != len(q.gtids) {
		return false
	}
	for i := range p.gtids {
		if p.gtids[i] != q.gtids[i] {
			return false
		}
	}
	return true
}

// MarshalText implements encoding.TextMarshaler.
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Position) UnmarshalText(b []byte) error {
	q, err := ParsePosition(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
