"""The operator command: arguments, and one clear line when it cannot do its job."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster_service.domain.auth_events import AuthEvent
from cluster_service.revoke import main, parse_args


def test_arguments_make_the_event() -> None:
    assert parse_args(["--user-id", "7"]) == AuthEvent("user_revoked", 7)
    assert parse_args(["--flush"]) == AuthEvent("cache_flush")


@pytest.mark.parametrize("argv", [[], ["--user-id", "x"], ["--user-id", "-1"],
                                  ["--user-id", "7", "--flush"]])
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in ("AUTH_CACHE_URI", "AUTH_CACHE_SECRET", "RABBITMQ_HOST", "RABBITMQ_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_bad_configuration_is_one_line_naming_the_variable(
        clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("RABBITMQ_PORT", "abc")
    assert main(["--flush"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RABBITMQ_PORT" in err and "Traceback" not in err


def test_unreachable_broker_exits_1_with_one_line(
        clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("RABBITMQ_HOST", "127.0.0.1")
    clean_env.setenv("RABBITMQ_PORT", "1")  # nothing listens there
    assert main(["--user-id", "7"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not publish" in err
