"""promtool accepts the shipped Prometheus config and rules, and the rule unit tests pass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import DEPLOY, debian_binary

PROM_DIR = DEPLOY / "prometheus"


def _promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [debian_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_config() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests() -> None:
    result = _promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The checks above can fail: a rule with a PromQL syntax error is refused."""
    rules = yaml.safe_load((PROM_DIR / "rules.yml").read_text(encoding="utf-8"))
    rules["groups"][1]["rules"][0]["expr"] = "up{job=="
    broken = tmp_path / "rules.yml"
    broken.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = _promtool("check", "rules", str(broken), cwd=tmp_path)
    assert result.returncode != 0


def test_every_alert_the_brief_requires_exists_and_is_unit_tested() -> None:
    rules = yaml.safe_load((PROM_DIR / "rules.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    required = {
        "SwarmNodeDown",
        "SwarmNoRolloutsReceived",
        "SwarmRewardCollapse",
        "SwarmCheckpointStale",
        "SwarmRejectionRateSpike",
    }
    assert required <= set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    tests = yaml.safe_load((PROM_DIR / "rules_test.yml").read_text(encoding="utf-8"))
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])}
    assert required <= tested, f"alerts without a promtool unit test: {sorted(required - tested)}"


def test_jobs_named_in_rules_are_scraped() -> None:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    named = set(re.findall(r'job="([^"]+)"', (PROM_DIR / "rules.yml").read_text(encoding="utf-8")))
    assert named and named <= jobs, f"rules name jobs that prometheus.yml does not scrape: {named - jobs}"


@pytest.mark.parametrize("name", ["prometheus.yml", "rules.yml", "rules_test.yml"])
def test_prometheus_files_parse(name: str) -> None:
    assert isinstance(yaml.safe_load((PROM_DIR / name).read_text(encoding="utf-8")), dict)
