package events

import "strings"

// Secret replaces every redacted string literal.
const Secret = "'<secret>'"

// Redact returns a statement with the secrets of account statements
// replaced by '<secret>', as MariaDB's own logs show them:
//
//	CREATE USER / ALTER USER / GRANT … IDENTIFIED BY [PASSWORD] '…'
//	… IDENTIFIED VIA|WITH plugin USING|AS '…' or PASSWORD('…') [OR …]
//	SET PASSWORD [FOR user] = '…' or PASSWORD('…') or OLD_PASSWORD('…')
//	PASSWORD('…') and OLD_PASSWORD('…') anywhere, MASTER_PASSWORD = '…'
//
// It lexes the statement (string literals with backslash escapes and
// doubled quotes, charset introducers, quoted identifiers, comments, and
// the text inside executable comments /*!…*/ as code), so a keyword inside
// a literal, identifier or comment does not arm it. A literal that is not
// terminated where a secret is expected is redacted to the end. Every other
// byte is kept as it is.
func Redact(sql string) string {
	var b strings.Builder
	last := 0 // sql[last:] is not copied to b yet
	armed := false
	identified := false // an IDENTIFIED was seen in this statement
	setPassword := 0    // 1: first word SET; 2: then PASSWORD
	words := 0          // words seen in this statement
	prev := ""          // the previous word, upper-case; "" after a non-word token
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case isSpace(c):
			i++
		case c == '#' || (c == '-' && strings.HasPrefix(sql[i:], "--") && (i+2 == len(sql) || isSpace(sql[i+2]))):
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*!"), c == '/' && strings.HasPrefix(sql[i:], "/*M!"):
			// Executable comment: the marker and version are skipped, the
			// content is code; its "*/" is skipped below.
			i += 3
			if sql[i-1] == 'M' {
				i++
			}
			for i < len(sql) && sql[i] >= '0' && sql[i] <= '9' {
				i++
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				i = len(sql)
			} else {
				i += 2 + end + 2
			}
		case c == '*' && strings.HasPrefix(sql[i:], "*/"):
			i += 2
		case c == '`':
			i = skipQuoted(sql, i, '`', false)
			armed, prev = false, ""
		case c == '\'' || c == '"' || (isWordByte(c) && literalAfterPrefix(sql, i) > i):
			start := i
			if c != '\'' && c != '"' {
				i = literalAfterPrefix(sql, i)
			}
			end := skipQuoted(sql, i, sql[i], true)
			if armed {
				b.WriteString(sql[last:start])
				b.WriteString(Secret)
				last = end
			}
			i = end
			armed, prev = false, ""
		case isWordByte(c):
			start := i
			for i < len(sql) && isWordByte(sql[i]) {
				i++
			}
			w := strings.ToUpper(sql[start:i])
			words++
			switch {
			case words == 1 && w == "SET":
				setPassword = 1
			case words == 2 && setPassword == 1 && w == "PASSWORD":
				setPassword = 2
			case words <= 2:
				setPassword = 0
			}
			switch {
			case w == "IDENTIFIED":
				identified = true
				armed = false
			case w == "BY" && prev == "IDENTIFIED":
				armed = true
			case (w == "USING" || w == "AS") && identified:
				armed = true
			case w == "PASSWORD" || w == "OLD_PASSWORD" || w == "MASTER_PASSWORD":
				armed = true
			default:
				armed = false
			}
			prev = w
		case c == ';':
			i++
			armed, identified, setPassword, words, prev = false, false, 0, 0, ""
		case c == '=' && setPassword == 2:
			i++
			armed, prev = true, ""
		case c == '(' && (prev == "PASSWORD" || prev == "OLD_PASSWORD"),
			c == '=' && prev == "MASTER_PASSWORD":
			// PASSWORD('…'), MASTER_PASSWORD='…': stays armed. (A column
			// named password, as in SET password='…', is not a secret.)
			i++
			prev = ""
		default:
			i++
			armed, prev = false, ""
		}
	}
	if last == 0 {
		return sql
	}
	b.WriteString(sql[last:])
	return b.String()
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// literalAfterPrefix returns the index of the quote of a string literal
// that starts at i with a prefix (N'…', X'…', B'…', _utf8mb4'…'), or i
// when there is none.
func literalAfterPrefix(sql string, i int) int {
	j := i
	for j < len(sql) && isWordByte(sql[j]) {
		j++
	}
	if j >= len(sql) || (sql[j] != '\'' && sql[j] != '"') || (j > 0 && i > 0 && isWordByte(sql[i-1])) {
		return i
	}
	w := strings.ToUpper(sql[i:j])
	if w == "N" || w == "X" || w == "B" || (len(w) > 1 && w[0] == '_') {
		return j
	}
	return i
}

// skipQuoted returns the index after the quoted text that starts at i
// with quote q, or len(sql) when it is not terminated. A doubled quote is
// part of the text; a backslash escapes the next byte where escapes apply.
func skipQuoted(sql string, i int, q byte, escapes bool) int {
	for i++; i < len(sql); i++ {
		switch sql[i] {
		case '\\':
			if escapes {
				i++
			}
		case q:
			if i+1 < len(sql) && sql[i+1] == q {
				i++
				continue
			}
			return i + 1
		}
	}
	return len(sql)
}

// RedactMessage redacts the statement that a server's error message
// quotes ("… Query: 'CREATE USER … IDENTIFIED BY '…”", as a replica's
// Last_SQL_Error does): the text after "Query: '" up to the message's
// last quote is redacted as a statement.
func RedactMessage(msg string) string {
	const marker = "Query: '"
	i := strings.Index(msg, marker)
	if i < 0 {
		return Redact(msg)
	}
	start := i + len(marker)
	end := strings.LastIndexByte(msg, '\'')
	if end < start {
		return msg[:start] + Redact(msg[start:])
	}
	return msg[:start] + Redact(msg[start:end]) + msg[end:]
}
