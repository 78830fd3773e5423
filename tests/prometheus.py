"""A real Prometheus for tests (Debian's package, via deploy/prometheus/install.sh) and promtool.

`Prometheus` runs one server on a free loopback port with a 1 s scrape and rule-evaluation interval;
tests add targets through file-based discovery (`scrape`) and read what it scraped through its HTTP
API (`query`, `query_range`), the way Grafana reads it, never the target's text page.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "prometheus" / "install.sh"
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
JOB = "kafka-twilio"


class PrometheusUnavailable(RuntimeError):
    """No Prometheus / promtool could be found or installed."""


def prometheus_bin() -> Path:
    """The folder holding `prometheus` and `promtool`, installed by the project's script if missing."""
    result = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PrometheusUnavailable(f"deploy/prometheus/install.sh failed:\n{result.stderr[-2000:]}")
    folder = Path(result.stdout.strip().splitlines()[-1])
    if not (folder / "prometheus").is_file() or not (folder / "promtool").is_file():
        raise PrometheusUnavailable(f"no prometheus and promtool in {folder}")
    return folder


def plain_rules(path: Path) -> Path:
    """Write the PrometheusRule's `spec.groups` as a plain rule file (what Prometheus and promtool read)."""
    spec = yaml.safe_load(RULES.read_text(encoding="utf-8"))["spec"]
    path.write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Prometheus:
    """One Prometheus server process scraping the targets tests give it (`scrape`), with our rules."""

    def __init__(self, binaries: Path, workdir: Path) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.targets = workdir / "targets"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        self.targets.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(plain_rules(self.workdir / "rules.yaml"))],
            "scrape_configs": [{
                "job_name": JOB,
                "file_sd_configs": [{"files": [str(self.targets / "*.json")], "refresh_interval": "1s"}],
            }],
        }  # fmt: skip
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
        with (self.workdir / "prometheus.log").open("wb") as log:
            self.process = self._spawn(log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusUnavailable(f"prometheus exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusUnavailable(f"prometheus did not become ready: {self.log_tail()}")

    def _spawn(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(self.binaries / "prometheus"), f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def log_tail(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def scrape(self, name: str, port: int, labels: dict[str, str]) -> None:
        """Scrape 127.0.0.1:`port` from now on, with `labels` on every series (as the operator adds)."""
        target = [{"targets": [f"127.0.0.1:{port}"], "labels": labels}]
        tmp = self.targets / f".{name}.tmp"
        tmp.write_text(json.dumps(target), encoding="utf-8")
        tmp.rename(self.targets / f"{name}.json")  # atomic: discovery never reads half a file

    def unscrape(self, name: str) -> None:
        (self.targets / f"{name}.json").unlink(missing_ok=True)

    def api(self, path: str, **params: str | float) -> Any:
        """GET /api/v1/`path`; the `data` of a successful answer."""
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at now: the result vector."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, or None when it has no series."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        result: list[dict[str, Any]] = data["result"]
        return result
