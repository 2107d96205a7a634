// Package understudy is the vocabulary of the understudy backup tool.
//
// understudy follows MariaDB primaries as a replica and keeps every
// transaction they commit in a durable archive of native binlog files.
//
// Glossary:
//
//   - Source: one configured MariaDB primary that understudy replicates from.
//     Each source has its own directory in the archive.
//   - GTID: a MariaDB global transaction id, domain-server-sequence.
//   - Position: one GTID per replication domain, written the MariaDB way
//     ("0-1-100,1-2-7"). The position of an archive is the last GTID archived
//     in every domain; it is what understudy sends as @slave_connect_state.
//   - Archived file: one binlog file in the archive, in the native MariaDB
//     format (magic, format description, GTID list, whole transactions), with a
//     sidecar index of its transactions. A sealed file has a sha256 in the
//     source's manifest. See docs/archive-format.md.
//   - Durable: a transaction is durable once it is whole and fsynced; only
//     durable transactions count, a partial tail is cut off on restart.
//
// The root package holds only small value types and errors and imports only
// the standard library.
package understudy
