"""End to end: a real Prometheus server scrapes the exporter; its query API has our numbers."""
import json
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from exporter_helpers import ERRORS_TOML, failing_calls, start_exporter

pytestmark = pytest.mark.kernel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, tmp, target: str):
        config = tmp / "prometheus.yml"
        config.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: bpfwatch
    static_configs:
      - targets: ["{target}"]
""")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(tmp / "prometheus.log", "w+")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address={self.url[7:]}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, expr: str) -> list:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, expr: str, want: float, timeout: float = 30.0) -> float:
        """Poll until the query's single value equals want; return the last value seen."""
        deadline, seen = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise AssertionError(f"prometheus exited: {self.log.read()[-2000:]}")
            try:
                result = self.query(expr)
            except OSError:  # not listening yet
                result = []
            if result:
                seen = float(result[0]["value"][1])
                if seen == want:
                    return seen
            time.sleep(0.3)
        return seen

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    exporter, url = start_exporter("--tracers", "syscount", "--program", ERRORS_TOML)
    prom = Prometheus(tmp_path_factory.mktemp("prom"), urllib.parse.urlparse(url).netloc)
    try:
        assert prom.wait_for('up{job="bpfwatch"}', 1) == 1
        yield exporter, prom
    finally:
        prom.close()
        assert exporter.stop(signal.SIGTERM) == 0
        exporter.close()


def test_prometheus_sees_exact_counts_after_a_workload(stack):
    _, prom = stack
    # Nothing else calls sched_get_priority_min with a bad policy: the series
    # starts with this workload (the exporter's maps are its own).
    failing_calls(37)
    errors = 'bpfwatch_syscall_errors_total{syscall="sched_get_priority_min",errno="EINVAL"}'
    assert prom.wait_for(errors, 37) == 37
    assert prom.wait_for('bpfwatch_syscalls_total{syscall="sched_get_priority_min"}', 37) == 37
    failing_calls(5)
    assert prom.wait_for(errors, 42) == 42


def test_prometheus_sees_self_telemetry(stack):
    _, prom = stack
    assert prom.wait_for('bpfwatch_program_attached{tracer="syscount",hook="raw_tracepoint"}', 1) == 1
    assert prom.wait_for('bpfwatch_program_attached{tracer="syscall_errors"}', 1) == 1
    assert prom.wait_for('bpfwatch_map_max_entries{tracer="syscall_errors",map="errors"}', 4096) == 4096
    assert prom.wait_for('count(bpfwatch_build_info)', 1) == 1
    assert prom.wait_for('scrape_samples_scraped{job="bpfwatch"} > bool 0', 1) == 1
