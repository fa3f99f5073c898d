"""deploy/prometheus/alerts.yml: valid for promtool, its unit tests pass, its series exist.

promtool comes with Debian's `prometheus` package; `make test` installs it
when missing, so this never skips.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from cxstream.sinks.prometheus import PipelineMetrics, PrometheusSink

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus (make test does this)")
    return subprocess.run(
        [binary, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_only_series_the_worker_exports() -> None:
    registry = CollectorRegistry()
    PipelineMetrics(registry)
    PrometheusSink(registry)
    exported = {
        name
        for family in registry.collect()
        for name in (family.name, f"{family.name}_total", f"{family.name}_bucket")
    }
    rules = yaml.safe_load((RULES_DIR / "alerts.yml").read_text(encoding="utf-8"))
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\b(cx_[a-z_]+|cxstream_[a-z_]+)\b", rule["expr"])
    }
    assert used
    assert used <= exported, f"not exported by the worker: {sorted(used - exported)}"
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert {"CxNpsLow", "CxCsatLow", "CxBounceRateHigh"} <= set(names)
    assert {"CxstreamRejectingInput", "CxstreamLagHigh"} <= set(names)
