"""schemathesis fuzzes the running service from its own /openapi.json.

Real gunicorn, real RabbitMQ, the stand-in peers. Bounded: a fixed number of
examples per operation and a subprocess deadline, against 127.0.0.1 only. Fails on any
500, any response the document does not describe, and any invalid input the
service accepts.
"""

from __future__ import annotations

import re
import subprocess  # nosec B404 - runs the schemathesis CLI from our own venv
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from ..support.service import ServiceProcess

pytestmark = [pytest.mark.gunicorn, pytest.mark.rabbitmq]

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
# Checks that need operations this API does not have (create, then read or delete).
NOT_APPLICABLE = "use_after_free,ensure_resource_availability,object_level_authorization"
# A generated pod name is a pod the agent does not have: its answer is the agent's
# plain-text failure, which the contract maps to 502 (documented). Any other 5xx fails.
# Any string is a schema-valid `continue`; one the service did not issue is 410
# continue_expired (documented), so a list answers 410 to a valid request too.
LISTS = ("namespaces", "pods", "deployments", "services", "nodes")
CONFIG = """
# A request line over gunicorn's 4 KB is refused before the app sees it: 414.
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "414", "415", "422",
                     "428", "429", "431", "5xx"]

[[operations]]
include-name = "GET /api/v3.0/cluster/pods/{pod}/logs"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502"]
""" + "".join(f"""
[[operations]]
include-name = "GET /api/v3.0/cluster/{name}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409",
                                                     "410", "429", "5xx"]
""" for name in LISTS)


def test_no_server_errors_and_every_response_matches_the_document(
        service_factory: Callable[..., ServiceProcess], peers: Any, tmp_path: Path) -> None:
    service = service_factory()
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    argv = [SCHEMATHESIS, "run", f"{service.base_url}/openapi.json",
            "--checks", "all", "--exclude-checks", NOT_APPLICABLE,
            "--phases", "examples,coverage,fuzzing",
            # No --max-time: with it, fuzzing repeats until the budget is spent.
            "--max-examples", "50", "--seed", "6",
            "--workers", "2", "--request-timeout", "10",
            "--header", "X-API-Key: demo-key", "--no-color",
            "--report", "junit", "--report-dir", str(tmp_path / "report")]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NO_COLOR": "1",
           "SCHEMATHESIS_TELEMETRY": "false"}
    run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,  # nosec
                         timeout=120, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20000:]
    assert "No issues found" in output, output[-5000:]
    # Every operation, the document itself included.
    assert re.search(r"Tested:\s+11\b", output), output[-5000:]
