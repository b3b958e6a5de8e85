"""Which environment variables the settings loader reads."""

from __future__ import annotations

from typing import Any

from cluster_service.config import RETIRED, load_settings


def variables_read_by_load_settings() -> set[str]:
    """The names load_settings asks its environment for (retired names, refused if set, aside)."""
    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            read.add(key)
            return super().get(key, default)

    load_settings(Recording())
    return read - set(RETIRED)
