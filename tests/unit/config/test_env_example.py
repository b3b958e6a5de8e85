""".env.example documents every variable, each with its default and a comment."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from dotenv import dotenv_values

from cluster_service.config import Settings, load_settings

from ...support.config_vars import variables_read_by_load_settings

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / ".env.example"
# Read by gunicorn.conf.py itself rather than by load_settings.
GUNICORN_ONLY = {"GUNICORN_ACCESS_LOG", "PROMETHEUS_MULTIPROC_DIR"}
LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def parse_example() -> dict[str, str]:
    """KEY=VALUE lines; comments and blank lines ignored; each key once."""
    values: dict[str, str] = {}
    for number, line in enumerate(EXAMPLE.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f".env.example:{number}: not a KEY=VALUE line: {line!r}"
        key, value = match.groups()
        assert key not in values, f".env.example:{number}: {key} appears twice"
        values[key] = value
    return values


def test_every_settings_variable_is_documented() -> None:
    documented = set(parse_example())
    from_fields = {field.name.upper() for field in dataclasses.fields(Settings)}
    assert from_fields - documented == set()
    assert variables_read_by_load_settings() - documented == set()
    assert GUNICORN_ONLY - documented == set()


def test_documents_nothing_unknown() -> None:
    known = variables_read_by_load_settings() | GUNICORN_ONLY
    assert set(parse_example()) - known == set()


def test_gunicorn_only_variables_are_read_by_gunicorn_conf() -> None:
    source = (REPO / "gunicorn.conf.py").read_text()
    for name in GUNICORN_ONLY:
        assert f'"{name}"' in source


def test_values_are_the_defaults() -> None:
    values = parse_example()
    assert load_settings(values) == load_settings({}) == Settings()


def test_fallback_is_off_and_gunicorn_extras_are_empty() -> None:
    values = parse_example()
    assert values["USER_SERVICE_URL"] == ""
    assert values["GUNICORN_ACCESS_LOG"] == ""
    assert values["PROMETHEUS_MULTIPROC_DIR"] == ""


def test_every_variable_has_a_one_line_comment_above_it() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if LINE.match(line):
            above = lines[number - 1].strip() if number else ""
            assert above.startswith("# ") and len(above) > 3, (
                f".env.example:{number + 1}: {line.split('=')[0]} needs a comment line above it")


def test_python_dotenv_reads_the_same_values() -> None:
    # wsgi.py and gunicorn.conf.py load .env with python-dotenv: the syntax must agree.
    parsed = {key: value or "" for key, value in dotenv_values(EXAMPLE).items()}
    assert parsed == parse_example()
