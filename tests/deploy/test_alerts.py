"""Alert unit tests: `promtool test rules` on deploy/prometheus/alerts.test.yaml, with Prometheus' own
rule engine, for every alert in deploy/prometheus/rules.yaml (a firing and a non-firing case each)."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import missing
from tests.prometheus import RULES, PrometheusUnavailable, plain_rules, prometheus_bin

ALERT_TESTS = RULES.parent / "alerts.test.yaml"


@cache
def promtool() -> Path:
    try:
        return prometheus_bin() / "promtool"
    except PrometheusUnavailable as exc:
        missing("promtool", exc)


def alert_names() -> list[str]:
    spec = yaml.safe_load(RULES.read_text(encoding="utf-8"))["spec"]
    return sorted(r["alert"] for g in spec["groups"] for r in g["rules"] if "alert" in r)


def cases() -> list[dict[str, Any]]:
    doc: dict[str, Any] = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    return [case for group in doc["tests"] for case in group.get("alert_rule_test", [])]


def run_promtool(tmp_path: Path, tests: str) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on `tests` (the test file's text) beside the plain rule file."""
    plain_rules(tmp_path / "rules.yaml")
    (tmp_path / "alerts.test.yaml").write_text(tests, encoding="utf-8")
    return subprocess.run(
        [str(promtool()), "test", "rules", "alerts.test.yaml"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("alert", alert_names())
def test_every_alert_has_a_firing_and_a_non_firing_promtool_case(alert: str) -> None:
    mine = [c for c in cases() if c["alertname"] == alert]
    assert any(c.get("exp_alerts") for c in mine), f"{alert}: no case where it fires"
    assert any(not c.get("exp_alerts") for c in mine), f"{alert}: no case where it stays silent"


def test_the_alert_unit_tests_pass_with_promtool(tmp_path: Path) -> None:
    result = run_promtool(tmp_path, ALERT_TESTS.read_text(encoding="utf-8"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_fails_a_case_whose_expected_alert_differs(tmp_path: Path) -> None:
    # The harness must be able to fail: the same file with one expected severity changed.
    text = ALERT_TESTS.read_text(encoding="utf-8").replace("{severity: critical,", "{severity: info,", 1)
    result = run_promtool(tmp_path, text)
    assert result.returncode != 0
    assert "KafkaTwilioConsumerDown" in result.stdout + result.stderr


def test_the_rule_file_passes_promtools_own_check(tmp_path: Path) -> None:
    path = plain_rules(tmp_path / "rules.yaml")
    result = subprocess.run(
        [str(promtool()), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    spec = yaml.safe_load(RULES.read_text(encoding="utf-8"))["spec"]
    records = sum(1 for g in spec["groups"] for r in g["rules"] if "record" in r)
    assert records == 4
    assert f"SUCCESS: {len(alert_names()) + records} rules found" in result.stdout + result.stderr
