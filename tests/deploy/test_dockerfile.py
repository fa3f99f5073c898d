"""The worker image: Dockerfile and .dockerignore, checked without a Docker engine.

The Dockerfile is parsed with BuildKit's own parser (PyPI `dockerfile`), its
health check is run against the worker's real metrics server, and its
dependency step is run against the real pyproject.toml.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator

import dockerfile
import pytest
from deploy_support import REPO
from prometheus_client import CollectorRegistry

from cxstream.app import MetricsServer

Command = dockerfile.Command


@pytest.fixture(scope="module")
def commands() -> tuple[Command, ...]:
    return dockerfile.parse_file(str(REPO / "Dockerfile"))


def stages(commands: tuple[Command, ...]) -> list[list[Command]]:
    result: list[list[Command]] = []
    for command in commands:
        if command.cmd == "FROM":
            result.append([])
        if result:
            result[-1].append(command)
    return result


def final_stage(commands: tuple[Command, ...]) -> list[Command]:
    return stages(commands)[-1]


def only(stage: list[Command], cmd: str) -> Command:
    found = [c for c in stage if c.cmd == cmd]
    assert len(found) == 1, f"expected one {cmd} in the final stage, found {len(found)}"
    return found[0]


def env_of(stage: list[Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for command in stage:
        if command.cmd == "ENV":
            values = command.value
            env.update(zip(values[0::2], values[1::2], strict=True))
    return env


def test_every_stage_is_python_311_slim(commands: tuple[Command, ...]) -> None:
    images = [stage[0].value[0] for stage in stages(commands)]
    assert images, "no FROM"
    assert all(image == "python:3.11-slim" for image in images), images


def test_runs_the_worker_as_a_non_root_user(commands: tuple[Command, ...]) -> None:
    stage = final_stage(commands)
    user = only(stage, "USER").value[0]
    assert user not in ("root", "0"), user
    assert stage.index(only(stage, "USER")) > max(
        i for i, c in enumerate(stage) if c.cmd in ("RUN", "COPY")
    ), "USER must come after the last RUN/COPY, so the worker does not run as root"
    cmd = only(stage, "CMD")
    assert cmd.json, "CMD in exec form, so the worker gets the signals itself"
    assert list(cmd.value) == ["cxstream", "worker"]


def test_exposes_the_metrics_port(commands: tuple[Command, ...]) -> None:
    stage = final_stage(commands)
    env = env_of(stage)
    assert only(stage, "EXPOSE").value == (env["CXSTREAM_METRICS_PORT"],)
    assert env["CXSTREAM_METRICS_PORT"] == "9108"


def test_data_directory_belongs_to_the_worker(commands: tuple[Command, ...]) -> None:
    stage = final_stage(commands)
    datadir = env_of(stage)["CXSTREAM_DATADIR"]
    setup = " ".join(" ".join(c.value) for c in stage if c.cmd == "RUN")
    assert f"mkdir -p {datadir}" in setup
    chown = re.search(r"chown -R cxstream:cxstream (\S+)", setup)
    assert chown is not None, setup
    assert datadir == chown[1] or datadir.startswith(chown[1] + "/")


def test_dependency_step_lists_the_project_dependencies(commands: tuple[Command, ...]) -> None:
    """The image installs dependencies from pyproject.toml before copying the code."""
    run = next(c for c in stages(commands)[0] if c.cmd == "RUN" and "tomllib" in c.value[0])
    code = re.search(r'python -c "(.*?)"\s*\\?\s*>', run.value[0], re.S)
    assert code is not None, run.value[0]
    result = subprocess.run(
        [sys.executable, "-c", code[1]],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    with (REPO / "pyproject.toml").open("rb") as handle:
        expected = tomllib.load(handle)["project"]["dependencies"]
    assert result.stdout.splitlines() == expected


def healthcheck_argv(commands: tuple[Command, ...]) -> list[str]:
    check = only(final_stage(commands), "HEALTHCHECK")
    assert check.value[0] == "CMD" and check.json, "HEALTHCHECK CMD in exec form"
    assert any(flag.startswith("--start-period=") for flag in check.flags)
    argv = list(check.value[1:])
    assert argv[0] == "python"  # the image's interpreter; the test uses this one
    return [sys.executable, *argv[1:]]


@pytest.fixture
def metrics_server() -> Iterator[tuple[MetricsServer, list[bool]]]:
    ready = [False]
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, lambda: ready[0])
    try:
        yield server, ready
    finally:
        server.close()


def test_healthcheck_follows_healthz(
    commands: tuple[Command, ...], metrics_server: tuple[MetricsServer, list[bool]]
) -> None:
    argv = healthcheck_argv(commands)
    assert "/healthz" in " ".join(argv)
    server, ready = metrics_server
    env = {"CXSTREAM_METRICS_PORT": str(server.port), "PATH": "/usr/bin:/bin"}

    def check() -> int:
        return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode

    assert check() != 0, "healthy while /healthz says 503 (not consuming yet)"
    ready[0] = True
    assert check() == 0, "unhealthy while /healthz says 200"


def test_healthcheck_fails_when_nothing_listens(commands: tuple[Command, ...]) -> None:
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, lambda: True)
    port = server.port
    server.close()
    argv = healthcheck_argv(commands)
    env = {"CXSTREAM_METRICS_PORT": str(port), "PATH": "/usr/bin:/bin"}
    assert subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode != 0


# --- .dockerignore ------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern syntax (Go filepath.Match plus `**`) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(path: str) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the build context.

    The last pattern that matches the path or one of its parent directories wins;
    `!` patterns put paths back.
    """
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((negate, _pattern_regex(pattern.strip("/"))))
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_build_context_holds_what_copy_needs(commands: tuple[Command, ...]) -> None:
    sources = [
        source
        for c in commands
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
        for source in c.value[:-1]
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"
    tracked = subprocess.run(
        ["git", "ls-files", "cxstream"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked
    assert [p for p in tracked if dockerignore_excludes(p)] == []


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "cxstream-data/cxstream/checkpoints/stage1-0.pickle",
        "cxstream/__pycache__/app.cpython-311.pyc",
        "cxstream/engine/__pycache__/store.cpython-311.pyc",
        "deploy/k8s/secret.template.yaml",
    ],
)
def test_build_context_leaves_out(path: str) -> None:
    assert dockerignore_excludes(path)
