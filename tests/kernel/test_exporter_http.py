"""The exporter's HTTP side under hostile clients: idle and half-sent
connections, silent TLS clients, hang-ups, plain HTTP on the TLS port,
probing basic-auth user names by timing. Scrapes keep being served."""
import base64
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import bcrypt
import pytest

from exporter_helpers import ERRORS_TOML, start_exporter, write

pytestmark = pytest.mark.kernel

MAX_CONNECTIONS = 64  # the default
READ_TIMEOUT = 3


def threads(pid: int) -> int:
    return int(re.search(r"Threads:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))


def address(url: str) -> tuple[str, int]:
    host, port = re.match(r"https?://([^:/]+):(\d+)", url).groups()
    return host, int(port)


def make_cert(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem"],
                   check=True, capture_output=True)
    return ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))


def timed_scrape(url: str, context=None, headers=None) -> tuple[int, float]:
    started = time.monotonic()
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


@pytest.fixture
def exporter():
    started = []

    def start(*args):
        proc, url = start_exporter("--tracers", "none", "--program", ERRORS_TOML,
                                   "--read-timeout", str(READ_TIMEOUT), *args)
        started.append(proc)
        return proc, url
    yield start
    for proc in started:
        assert proc.stop(signal.SIGTERM) == 0
        proc.close()


def test_idle_half_sent_requests_cannot_exhaust_the_exporter(exporter):
    proc, url = exporter()
    idle = []
    for _ in range(300):
        s = socket.create_connection(address(url))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        idle.append(s)
    time.sleep(0.5)
    assert threads(proc.pid) <= MAX_CONNECTIONS + 8
    status, seconds = timed_scrape(url)
    assert status == 200 and seconds < 3, seconds
    time.sleep(READ_TIMEOUT + 1.5)  # the reaper ends what is left
    assert threads(proc.pid) <= 8
    for s in idle:
        s.close()
    assert "Traceback" not in proc.stderr


def test_silent_tls_clients_are_cut_and_scrapes_go_on(exporter, tmp_path):
    context = make_cert(tmp_path)
    web = write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
    proc, url = exporter("--web-config", web)
    silent = [socket.create_connection(address(url)) for _ in range(200)]  # no ClientHello
    time.sleep(0.5)
    assert threads(proc.pid) <= MAX_CONNECTIONS + 8
    status, seconds = timed_scrape(url, context)
    assert status == 200 and seconds < 3, seconds
    time.sleep(READ_TIMEOUT + 1.5)
    assert threads(proc.pid) <= 8
    for s in silent:
        s.close()
    assert "Traceback" not in proc.stderr


def misbehave(url: str, times: int) -> None:
    """Hang-ups, half requests, plain HTTP on the TLS port, a garbage handshake."""
    for _ in range(times):
        for payload in (b"", b"GET /metr", b"GET /metrics HTTP/1.0\r\n\r\n",
                        b"\x16\x03\x01\x00\x05hello"):
            s = socket.create_connection(address(url))
            if payload:
                s.sendall(payload)
            s.close()


def test_client_failures_are_one_rate_limited_line_without_tracebacks(exporter, tmp_path):
    context = make_cert(tmp_path)
    web = write(tmp_path / "web.yml", "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n")
    proc, url = exporter("--web-config", web)
    misbehave(url, 50)  # 200 failing clients
    assert timed_scrape(url, context)[0] == 200
    time.sleep(1)
    assert proc.stop(signal.SIGTERM) == 0
    lines = [l for l in proc.stderr.splitlines() if not l.startswith("Serving ")]
    assert "Traceback" not in proc.stderr
    shown = [l for l in lines if re.fullmatch(r"bpfwatch exporter: 127\.0\.0\.1: .+", l)]
    summary = [l for l in lines if "more client failures not shown" in l]
    assert 1 <= len(shown) <= 5 and len(summary) == 1, lines
    assert len(lines) == len(shown) + len(summary), lines
    assert any("TLS handshake failed" in l for l in shown), shown
    suppressed = int(re.search(r"exporter: (\d+) more", summary[0]).group(1))
    assert len(shown) + suppressed <= 200  # at most one line per failing client


def test_unknown_users_and_wrong_passwords_are_refused_alike(exporter, tmp_path):
    # that both cost one bcrypt check: tests/unit/test_webconfig.py
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(10)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prom: '{hashed}'\n")
    proc, url = exporter("--web-config", web)
    for user in ("nobody", "prom"):
        auth = "Basic " + base64.b64encode(f"{user}:wrong".encode()).decode()
        assert {timed_scrape(url, headers={"Authorization": auth})[0] for _ in range(3)} == {401}
    right = "Basic " + base64.b64encode(b"prom:right").decode()
    assert timed_scrape(url, headers={"Authorization": right})[0] == 200
