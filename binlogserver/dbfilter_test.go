package binlogserver

import "testing"

func TestRoutineDatabase(t *testing.T) {
	for _, tc := range []struct {
		sql, def, db string
		ok           bool
	}{
		{"CREATE DEFINER=`root`@`localhost` PROCEDURE `b`.`pb`()\nBEGIN END", "a", "b", true},
		{"CREATE DEFINER=`root`@`localhost` PROCEDURE `pa`() SELECT 1", "a", "a", true},
		{"CREATE DEFINER=`u`@`%` FUNCTION `x`.`f`(i INT) RETURNS int RETURN i", "a", "x", true},
		{"create or replace definer=root@localhost aggregate function b.agg(x int) returns int begin end", "a", "b", true},
		{"DROP PROCEDURE IF EXISTS `b`.`pb`", "a", "b", true},
		{"DROP FUNCTION f", "c", "c", true},
		{"ALTER EVENT `b`.`ev` DISABLE", "a", "b", true},
		{"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY DO SELECT 1", "b", "b", true},
		{"CREATE PACKAGE BODY `we``ird`.p AS BEGIN END", "a", "we`ird", true},
		{"/* c */ CREATE PROCEDURE b.p() SELECT 1", "a", "b", true},
		{"CREATE TABLE b.t (id INT)", "a", "", false},
		{"CREATE TRIGGER b.tr BEFORE INSERT ON b.t FOR EACH ROW SET @x = 1", "a", "", false},
		{"INSERT INTO b.t VALUES (1)", "a", "", false},
		{"GRANT EXECUTE ON PROCEDURE b.pb TO u", "a", "", false},
	} {
		db, ok := routineDatabase(tc.sql, tc.def)
		if db != tc.db || ok != tc.ok {
			t.Errorf("%q (default %s): %q %v, want %q %v", tc.sql, tc.def, db, ok, tc.db, tc.ok)
		}
	}
}
