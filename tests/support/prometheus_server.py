"""A real Prometheus (Debian's package) scraping one test service, on a free loopback port.

The config is the shipped ``deploy/prometheus/prometheus.yml`` with only what a
test must change: the target (the test service's port), a 1 s scrape and
evaluation interval (so a test waits seconds, not minutes), and the rule
file's absolute path. The job name, the metrics path and the rules are the
shipped ones.
"""

from __future__ import annotations

import subprocess  # nosec B404 - tests start the packaged prometheus binary
from pathlib import Path
from typing import Any

import requests
import yaml

from .service import free_port, terminate, wait_for
from .tools import require_tool

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "deploy" / "prometheus"


def scrape_config_for(target_port: int, interval: str = "1s") -> dict[str, Any]:
    """The shipped config, pointed at ``127.0.0.1:target_port`` and made fast."""
    config: dict[str, Any] = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(SHIPPED / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job.update(scrape_interval=interval, scrape_timeout=interval,
               static_configs=[{"targets": [f"127.0.0.1:{target_port}"]}])
    return config


class PrometheusProcess:
    """``prometheus`` with a generated config and its own storage; stop() ends it."""

    def __init__(self, workdir: Path, target_port: int) -> None:
        self.binary = require_tool("prometheus")
        self.port = free_port()
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config = scrape_config_for(target_port)
        self.job = self.config["scrape_configs"][0]["job_name"]
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "PrometheusProcess":
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(  # nosec B603 - fixed argv
            [self.binary, f"--config.file={self.config_path}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._ready, timeout, 0.2, what=f"prometheus ready on port {self.port}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n"
                                 f"{self.logs()}")
        return self.session.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the ``data`` of a successful answer, else AssertionError."""
        response = self.session.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body.get("status") == "success", \
            f"{path} {params}: {response.status_code} {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]  # type: ignore[no-any-return]

    def value(self, expr: str) -> float | None:
        """The single value of a query that yields one series, or None when it yields none."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def stop(self, timeout: float = 15.0) -> None:
        self.session.close()
        if self.proc is not None:
            terminate(self.proc, timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
