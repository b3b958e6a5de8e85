"""Secrets from files: ``X_FILE`` names a file that holds ``X``, as Kubernetes mounts secrets.

The value is the file's content with one trailing newline dropped (what
``echo`` and most editors add). Setting both ``X`` and ``X_FILE``, or naming a
file that cannot be read, is a :class:`ConfigError` naming the variable, never
the value.
"""

from __future__ import annotations

from typing import Mapping

from .reader import ConfigError

SECRET_FILE_VARIABLES = ("RABBITMQ_PASSWORD", "AUTH_CACHE_SECRET", "AUTH_CACHE_URI",
                         "RATE_LIMIT_STORAGE_URI")
_MAX_BYTES = 64 * 1024


def with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with every ``X_FILE`` that is set replaced by ``X`` and the file's content."""
    resolved: dict[str, str] | None = None
    for name in SECRET_FILE_VARIABLES:
        file_name = f"{name}_FILE"
        path = (env.get(file_name) or "").strip()
        if not path:
            continue
        if (env.get(name) or "").strip():
            raise ConfigError(f"{name} and {file_name} are both set: set one of them")
        if resolved is None:
            resolved = dict(env)
        resolved[name] = read_secret(file_name, path)
    return env if resolved is None else resolved


def read_secret(variable: str, path: str) -> str:
    """The content of ``path`` less one trailing newline; ConfigError naming ``variable``."""
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_BYTES + 1)
        if len(data) > _MAX_BYTES:
            raise ConfigError(f"{variable} names a file larger than {_MAX_BYTES} bytes")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{variable} names a file that cannot be read "
                          f"({type(error).__name__})") from None
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text
