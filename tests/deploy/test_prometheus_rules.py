"""docker/prometheus/: the scrape config and the rules, checked by promtool; the metric names
the rules use, checked against what /metrics exports; and the replicas stack's prometheus
service, read as compose reads it (no engine needed).

promtool comes with Debian's `prometheus` package (.ci/run installs it); without it the promtool
tests skip and say so. The names test needs only the app: a metric renamed in metrics.py and
not in rules.yml would leave a rule that never matches and an alert that never fires, silently.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from service.domain.clock import FixedClock
from service.entrypoints.http.app import create_app
from tests.conftest import NOW, memory_services, payload
from tests.deploy.conftest import COMPOSE_REPLICAS, ROOT, interpolate, load_compose

PROMETHEUS_DIR = ROOT / "docker" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TESTS = PROMETHEUS_DIR / "rules.test.yml"
STANDINS = ROOT / "scripts" / "docker-standins.sh"
MADE_BY_PROMETHEUS = {"up"}      # the scrape's own series, not the app's
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian's `prometheus` package; .ci/run installs it)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)}:\n{result.stdout}\n{result.stderr}"


def test_promtool_checks_the_config_and_the_rules_it_loads():
    result = promtool("check", "config", str(CONFIG))
    ok(result)
    assert "1 rule files found" in result.stdout


def test_promtool_checks_the_rules():
    ok(promtool("check", "rules", str(RULES)))


def test_promtool_unit_tests_of_the_rules_pass():
    result = promtool("test", "rules", str(RULES_TESTS))
    ok(result)
    assert "SUCCESS" in result.stdout


# ------------------------------------------------------------------ names: rules.yml vs /metrics

def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def series_names(expr: str) -> set[str]:
    """The series names an expression selects. Quoted strings, label matchers, `by (...)`
    groupings and range durations go first; a word followed by "(" is a function or aggregation;
    numbers, and the words PromQL keeps for itself, are not names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(", "(", text)
    words = set(re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return words - {"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}


def test_series_names_reads_what_an_expression_selects():
    assert series_names('sum by (job, le) (rate(x_bucket{route!~"/a|/b"}[5m])) / y') == {"x_bucket", "y"}
    assert series_names("histogram_quantile(0.99, z) > 0.25 and on (job) up == 1") == {"z", "up"}
    assert series_names("absent(up{job=\"api\"} == 1)") == {"up"}


def exported_names(policy) -> set[str]:
    """Every series name /metrics can carry, from its TYPE lines (a labelled counter no request
    has touched yet has no sample, but it has its TYPE line) and its samples."""
    client = create_app(services=memory_services(policy, FixedClock(NOW))).test_client()
    assert client.post("/decide", json=dict(payload(), user_id="names", application_id="names")).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
            if kind == "counter" and not name.endswith("_total"):
                names.add(name + "_total")
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def test_every_series_a_rule_reads_is_exported_by_metrics_or_recorded_here(policy):
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    read = set().union(*(series_names(rule["expr"]) for rule in rules()))
    exported = exported_names(policy)
    # the review queue gauges come from Redis at scrape time: the in-memory store has them too
    assert {"review_cases_pending", "decisions_total", "shadow_evaluations_total"} <= exported
    missing = read - recorded - exported - MADE_BY_PROMETHEUS
    assert not missing, f"rules.yml reads series /metrics does not export: {sorted(missing)}"
    assert {name for name in read if ":" in name} <= recorded, "a recorded name no rule records"


def test_every_recording_rule_and_alert_has_a_promtool_test():
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    tested_exprs = " ".join(t["expr"] for group in tests for t in group.get("promql_expr_test", []))
    alert_cases = [t for group in tests for t in group.get("alert_rule_test", [])]
    for rule in rules():
        if "record" in rule:
            assert rule["record"] in tested_exprs, f"no promql_expr_test for {rule['record']}"
        else:
            cases = [t for t in alert_cases if t["alertname"] == rule["alert"]]
            assert any(t["exp_alerts"] for t in cases), f"{rule['alert']}: never tested firing"
            assert any(not t["exp_alerts"] for t in cases), f"{rule['alert']}: never tested not firing"


# ------------------------------------------------------------------ the compose service

def test_the_replicas_stack_runs_prometheus_on_these_files():
    services = load_compose(COMPOSE_REPLICAS)["services"]
    prometheus = services["prometheus"]
    assert f"build {prometheus['image']} " in STANDINS.read_text(), "an image docker-standins.sh can make"
    assert "./docker/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "./docker/prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in prometheus["volumes"]
    assert prometheus["depends_on"]["api"]["condition"] == "service_healthy"
    assert [interpolate(str(p), {}) for p in prometheus["ports"]] == ["127.0.0.1:9090:9090"]
    assert "ports" not in services["api"]
    # the scrape names the api service and the port it exposes, and reads the mounted rules
    config = yaml.safe_load(CONFIG.read_text())
    (job,) = config["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert (job["job_name"], sd["names"], sd["type"]) == ("api", ["api"], "A")
    assert [str(sd["port"])] == [str(p) for p in services["api"]["expose"]]
    assert config["rule_files"] == ["rules.yml"]
