// Package prometheus holds the Prometheus alert rules of understudy
// (alerts.yml) and their unit tests (alerts_test.yml), which the test here
// runs with promtool. The test that checks the rules against a real
// Prometheus scraping a running understudy is in cmd/understudy
// (TestPrometheusScrapesRuleMetrics).
package prometheus

import (
	"os"
	"os/exec"
	"sort"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestAlertRules checks alerts.yml with promtool and runs its unit tests,
// and checks that the unit tests give every alert a case where it fires
// and one where it does not.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed (Debian's prometheus package; scripts/test.sh installs it): %v", err)
	}
	if out, err := exec.Command(promtool, "check", "rules", "alerts.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules alerts.yml: %v\n%s", err, out)
	}
	out, err := exec.Command(promtool, "test", "rules", "alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules alerts_test.yml: %v\n%s", err, out)
	}
	t.Logf("%s", out)

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, "alerts.yml", &rules)
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Alerts []struct {
				Name      string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, "alerts_test.yml", &tests)
	if len(tests.RuleFiles) != 1 || tests.RuleFiles[0] != "alerts.yml" {
		t.Fatalf("alerts_test.yml tests %v, want alerts.yml", tests.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.Alerts {
			if len(a.ExpAlerts) > 0 {
				fires[a.Name] = true
			} else {
				quiet[a.Name] = true
			}
		}
	}
	var names []string
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("alerts.yml has a rule that is not an alert")
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alerts.yml has two alerts named %s", r.Alert)
			}
			seen[r.Alert] = true
			names = append(names, r.Alert)
		}
	}
	sort.Strings(names)
	if len(names) < 10 {
		t.Fatalf("alerts.yml has %d alerts: %v", len(names), names)
	}
	for _, n := range names {
		if !fires[n] {
			t.Errorf("alerts_test.yml has no case where %s fires", n)
		}
		if !quiet[n] {
			t.Errorf("alerts_test.yml has no case where %s does not fire", n)
		}
	}
	for n := range fires {
		if !seen[n] {
			t.Errorf("alerts_test.yml tests %s, which alerts.yml does not have", n)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
