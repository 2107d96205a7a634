package snapshot

import "testing"

func TestSplitKeys(t *testing.T) {
	create := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `k` int(11) NOT NULL DEFAULT 0,\n  `c` char(120) NOT NULL DEFAULT '',\n  PRIMARY KEY (`id`),\n  KEY `k_1` (`k`),\n  UNIQUE KEY `c` (`c`)\n) ENGINE=InnoDB"
	got, keys := splitKeys(create)
	want := "CREATE TABLE `t` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `k` int(11) NOT NULL DEFAULT 0,\n  `c` char(120) NOT NULL DEFAULT '',\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if len(keys) != 2 || keys[0] != "ADD KEY `k_1` (`k`)" || keys[1] != "ADD UNIQUE KEY `c` (`c`)" {
		t.Fatalf("keys %q", keys)
	}
	// AUTO_INCREMENT only in a secondary key: keep everything.
	odd := "CREATE TABLE `t` (\n  `a` int NOT NULL,\n  `id` int NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`a`),\n  KEY `id` (`id`)\n) ENGINE=InnoDB"
	if got, keys := splitKeys(odd); got != odd || keys != nil {
		t.Fatalf("auto_increment table changed: %s %q", got, keys)
	}
	fk := "CREATE TABLE `c` (\n  `id` int NOT NULL,\n  `p` int,\n  PRIMARY KEY (`id`),\n  KEY `p` (`p`),\n  CONSTRAINT `f` FOREIGN KEY (`p`) REFERENCES `p` (`id`)\n) ENGINE=InnoDB"
	if got, keys := splitKeys(fk); got != fk || keys != nil {
		t.Fatalf("foreign key table changed: %s %q", got, keys)
	}
}
