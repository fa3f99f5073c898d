"""deploy/prometheus/prometheus.yml, checked by `promtool` (Debian package `prometheus`).

The rules in alerts.yml, beside it, have their own tests; here promtool checks
that the config loads them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from deploy_support import DEPLOY

CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (scripts/test.sh does)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_config_syntax() -> None:
    result = promtool("check", "config", "--syntax-only", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_with_its_rule_files() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    rule_files = [CONFIG.parent / Path(name) for name in config["rule_files"]]
    assert rule_files == [CONFIG.parent / "alerts.yml"]
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout, result.stdout


def test_scrapes_the_worker_often_enough_for_one_minute_rates() -> None:
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "cxstream"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    interval = job.get("scrape_interval", config["global"]["scrape_interval"])
    assert interval.endswith("s") and int(interval[:-1]) <= 15, interval
