package snapshot

import "strings"

// sqlTokens splits a statement into words at spaces, a quoted part
// (`name`, 'string' or "name", with doubled quotes and, in 'strings',
// backslash escapes) belonging to the word around it. Each token is
// [start, end) in stmt.
func sqlTokens(stmt string, fn func(start, end int) bool) {
	i := 0
	for i < len(stmt) {
		for i < len(stmt) && (stmt[i] == ' ' || stmt[i] == '\n' || stmt[i] == '\t' || stmt[i] == '\r') {
			i++
		}
		start := i
		for i < len(stmt) && stmt[i] != ' ' && stmt[i] != '\n' && stmt[i] != '\t' && stmt[i] != '\r' {
			if q := stmt[i]; q == '`' || q == '\'' || q == '"' {
				for i++; i < len(stmt); i++ {
					if stmt[i] == '\\' && q == '\'' {
						i++
						continue
					}
					if stmt[i] == q {
						if i+1 < len(stmt) && stmt[i+1] == q {
							i++
							continue
						}
						break
					}
				}
			}
			i++
		}
		if start < i && !fn(start, min(i, len(stmt))) {
			return
		}
	}
}

// eventOnReplica rewrites a CREATE EVENT statement, as SHOW CREATE EVENT
// gives it, so that an event the source runs (ENABLE) is created DISABLE
// ON SLAVE, as MariaDB creates the events a replica receives: it then runs
// on the source only, and its changes reach the target once, by
// replication. isEvent is false for any other statement, which comes back
// unchanged; ok is false for a CREATE EVENT whose status it cannot find.
// The status is the word after ON COMPLETION [NOT] PRESERVE, which the
// server writes after the schedule and before COMMENT and DO. enabled
// says whether it was ENABLE, and name is the event's name.
func eventOnReplica(stmt string) (out, name string, enabled, isEvent, ok bool) {
	type tok struct{ s, e int }
	var toks []tok
	word := func(t tok) string { return strings.ToUpper(stmt[t.s:t.e]) }
	state := 0 // 0: CREATE, 1: DEFINER= or EVENT, 5: the name, 2: until ON COMPLETION, 3: [NOT] PRESERVE, 4: the status
	pos := -1
	sqlTokens(stmt, func(s, e int) bool {
		t := tok{s, e}
		toks = append(toks, t)
		w := word(t)
		switch state {
		case 0:
			if w != "CREATE" {
				return false
			}
			state = 1
		case 1:
			switch {
			case strings.HasPrefix(w, "DEFINER="):
			case w == "EVENT":
				isEvent, state = true, 5
			default:
				return false
			}
		case 5:
			name = unquoteName(stmt[s:e])
			state = 2
		case 2:
			if w == "COMPLETION" && len(toks) >= 2 && word(toks[len(toks)-2]) == "ON" {
				state = 3
			}
		case 3:
			if w == "PRESERVE" {
				state = 4
			} else if w != "NOT" {
				return false
			}
		case 4:
			pos = len(toks) - 1
			return false
		}
		return true
	})
	if !isEvent {
		return stmt, "", false, false, true
	}
	if pos < 0 {
		return stmt, name, false, true, false
	}
	t := toks[pos]
	switch word(t) {
	case "ENABLE":
		return stmt[:t.s] + "DISABLE ON SLAVE" + stmt[t.e:], name, true, true, true
	case "DISABLE":
		return stmt, name, false, true, true
	}
	return stmt, name, false, true, false
}

// unquoteName returns a name as SHOW CREATE quotes it (in backticks, a
// backtick in it doubled; or in double quotes) unquoted.
func unquoteName(q string) string {
	if len(q) >= 2 && (q[0] == '`' || q[0] == '"') && q[len(q)-1] == q[0] {
		return strings.ReplaceAll(q[1:len(q)-1], q[:1]+q[:1], q[:1])
	}
	return q
}
