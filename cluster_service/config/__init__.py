"""Typed settings, read once from the environment and validated at start-up.

Every variable of the original README's table is here with its default, plus
the contract's additions (§3): ``settings.py`` declares them, ``loading.py``
reads them, ``reader.py`` checks them. A bad value raises :class:`ConfigError`,
one line naming the variable.
"""

from __future__ import annotations

from .loading import RETIRED, load_settings, settings_or_exit
from .reader import AUTH_CACHE_SECRET_MIN, ConfigError
from .settings import FLIGHT_MARGIN, Settings

__all__ = ["AUTH_CACHE_SECRET_MIN", "FLIGHT_MARGIN", "RETIRED", "ConfigError", "Settings",
           "load_settings", "settings_or_exit"]
