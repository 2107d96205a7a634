package snapshot

import "testing"

func TestEventOnReplica(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY STARTS '2026-11-26 10:00:00' ON COMPLETION NOT PRESERVE ENABLE DO DELETE FROM t",
			"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY STARTS '2026-11-26 10:00:00' ON COMPLETION NOT PRESERVE DISABLE ON SLAVE DO DELETE FROM t"},
		{"CREATE DEFINER=`a b`@`%` EVENT `x ON COMPLETION PRESERVE ENABLE` ON SCHEDULE AT '2030-01-01 00:00:00' ON COMPLETION PRESERVE ENABLE COMMENT 'it''s ON COMPLETION PRESERVE ENABLE' DO SELECT 'ENABLE'",
			"CREATE DEFINER=`a b`@`%` EVENT `x ON COMPLETION PRESERVE ENABLE` ON SCHEDULE AT '2030-01-01 00:00:00' ON COMPLETION PRESERVE DISABLE ON SLAVE COMMENT 'it''s ON COMPLETION PRESERVE ENABLE' DO SELECT 'ENABLE'"},
		{"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY '1:30' HOUR_MINUTE STARTS '2026-11-26 10:00:00' ON COMPLETION NOT PRESERVE DISABLE DO SELECT 1",
			"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY '1:30' HOUR_MINUTE STARTS '2026-11-26 10:00:00' ON COMPLETION NOT PRESERVE DISABLE DO SELECT 1"},
		{"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE DISABLE ON SLAVE DO SELECT 1",
			"CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE DISABLE ON SLAVE DO SELECT 1"},
	} {
		got, name, enabled, isEvent, ok := eventOnReplica(c.in)
		if !isEvent || !ok || got != c.want || enabled != (got != c.in) || (name != "e" && name != "x ON COMPLETION PRESERVE ENABLE") {
			t.Errorf("eventOnReplica(%q)\n= %q (name %q, enabled %v, event %v, ok %v)\nwant %q", c.in, got, name, enabled, isEvent, ok, c.want)
		}
	}
	for _, s := range []string{
		"CREATE DEFINER=`root`@`localhost` PROCEDURE `p`() SELECT 'EVENT ON COMPLETION PRESERVE ENABLE'",
		"CREATE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1",
		"CREATE DEFINER=`root`@`localhost` TRIGGER t BEFORE INSERT ON x FOR EACH ROW SET NEW.a = 'EVENT'",
	} {
		if got, _, _, isEvent, ok := eventOnReplica(s); isEvent || !ok || got != s {
			t.Errorf("eventOnReplica(%q) = %q, %v, %v", s, got, isEvent, ok)
		}
	}
	if _, _, _, isEvent, ok := eventOnReplica("CREATE DEFINER=`root`@`localhost` EVENT `e` ON SCHEDULE EVERY 1 DAY DO SELECT 1"); !isEvent || ok {
		t.Errorf("an event without ON COMPLETION: event %v, ok %v", isEvent, ok)
	}
}
