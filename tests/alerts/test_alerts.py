"""The Prometheus alerts (charts/regsweep/files/alerts.yaml), checked and unit-tested by the real
promtool: `promtool check rules` on the file and on the chart's rendered PrometheusRule, and
`promtool test rules tests/alerts/alerts_test.yaml`, whose input series make every alert fire
and also hold cases where it must not (a healthy policy, a freeze within its limit, a recent
success, a new policy, another job down...). Also: every alert has a severity, a `for:`, and a
summary and description, and uses only the metrics the operator serves (and `up`).

Run: `python3 -m pytest tests/alerts` (promtool comes from Debian's `prometheus` package:
`bash scripts/install-test-deps.sh`).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from promql import OPERATOR_METRICS, metric_names  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "regsweep"
ALERTS = CHART / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts_test.yaml"

ALERT_NAMES = {
    "RegsweepRunFailed",
    "RegsweepRegistryFrozenTooLong",
    "RegsweepNoRecentSuccess",
    "RegsweepOperatorDown",
    "RegsweepReconcileErrors",
}
PLACEHOLDER = 'job=~".*regsweep.*"'


def promtool() -> str:
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.fail("promtool is missing: run `bash scripts/install-test-deps.sh` (Debian's prometheus package has it)")
    return path


def run_promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True)


def rules():
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rule_file():
    result = run_promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in result.stdout


def test_promtool_unit_tests_pass():
    result = run_promtool("test", "rules", str(UNIT_TESTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_fail_when_an_alert_is_wrong(tmp_path):
    """promtool really compares: with one alert's threshold changed, the unit tests fail."""
    broken = ALERTS.read_text().replace("regsweep_max_read_only_seconds + 300", "regsweep_max_read_only_seconds + 3000")
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yaml").write_text(broken)
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(tmp_path / "alerts.yaml")]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests))
    result = run_promtool("test", "rules", str(tmp_path / "alerts_test.yaml"), cwd=tmp_path)
    assert result.returncode != 0
    assert "RegsweepRegistryFrozenTooLong" in result.stdout + result.stderr


def test_every_alert_fires_and_stays_quiet_somewhere():
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fires, quiet = set(), set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fires == ALERT_NAMES, f"never seen firing: {ALERT_NAMES - fires}"
    assert quiet == ALERT_NAMES, f"never seen quiet: {ALERT_NAMES - quiet}"


def test_every_alert_is_complete():
    found = rules()
    assert {r["alert"] for r in found} == ALERT_NAMES
    for rule in found:
        assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        assert not metric_names(rule["expr"]) - OPERATOR_METRICS - {"up"}, rule["alert"]
    per_policy = [r for r in found if r["alert"] not in ("RegsweepOperatorDown", "RegsweepReconcileErrors")]
    for rule in per_policy:
        for text in rule["annotations"].values():
            assert "{{ $labels.namespace }}" in text and "{{ $labels.policy }}" in text, rule["alert"]
    # The operator-wide ones name the operator's namespace (the scrape target's label) when known.
    for rule in found:
        assert "$labels.namespace" in rule["annotations"]["description"], rule["alert"]


def test_the_expressions_the_brief_asks_for():
    by_name = {r["alert"]: r for r in rules()}
    assert by_name["RegsweepRunFailed"]["expr"].strip() == "regsweep_last_run_succeeded == 0"
    frozen = by_name["RegsweepRegistryFrozenTooLong"]["expr"]
    assert "regsweep_registry_frozen == 1" in frozen and "regsweep_max_read_only_seconds + 300" in frozen
    no_success = by_name["RegsweepNoRecentSuccess"]["expr"]
    assert "unless on (namespace, policy) regsweep_last_success_timestamp_seconds" in no_success
    assert "2 * (max by (namespace, policy) (regsweep_schedule_interval_seconds) > 0)" in no_success
    down = by_name["RegsweepOperatorDown"]["expr"]
    assert down.count(PLACEHOLDER) == 2 and "absent(" in down
    assert "rate(regsweep_reconcile_errors_total" in by_name["RegsweepReconcileErrors"]["expr"]
    assert by_name["RegsweepReconcileErrors"]["for"] == "15m"


def test_metric_names_finds_selectors_only():
    assert metric_names('sum by (job, category) (rate(regsweep_reconcile_errors_total{job=~"a.*"}[5m])) > 0 and on (x) up') == {
        "regsweep_reconcile_errors_total",
        "up",
    }
    assert metric_names("time() - min_over_time(timestamp(foo)[15d:10m]) > 2 * bar + 1e3") == {"foo", "bar"}


def test_the_chart_renders_rules_promtool_accepts(tmp_path):
    helm_python = pytest.importorskip("helm_python")
    chart = helm_python.Chart.load(CHART)
    out = chart.render({"metrics": {"prometheusRule": {"enabled": True}}}, name="sweeper", namespace="regsweep-system", is_install=True)
    (text,) = [t for p, t in out.items() if p.endswith("templates/prometheusrule.yaml")]
    rule = yaml.safe_load(text)
    (tmp_path / "rendered.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run_promtool("check", "rules", str(tmp_path / "rendered.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert PLACEHOLDER not in text
    assert 'up{job="sweeper-regsweep-metrics", namespace="regsweep-system"} == 0' in text
