"""The exporter's HTTP side without the kernel: log rate limits, failure words,
the connection cap against a real socket server on loopback."""
import io
import socket
import ssl
import threading
import time
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from exporters import httpserver, webconfig


def test_quiet_log_shows_a_burst_then_sums_up_the_rest():
    out = io.StringIO()
    log = httpserver.QuietLog("bpfwatch exporter", burst=3, window=0.2, stream=out)
    for i in range(10):
        log(f"client {i}: hung up")
    assert out.getvalue().splitlines() == [f"bpfwatch exporter: client {i}: hung up" for i in range(3)]
    time.sleep(0.25)
    log("client 10: hung up")
    lines = out.getvalue().splitlines()
    assert lines[3:] == ["bpfwatch exporter: 7 more client failures not shown (at most 3 per 0.2s)",
                         "bpfwatch exporter: client 10: hung up"]
    log.flush()  # nothing suppressed since: nothing more to say
    assert len(out.getvalue().splitlines()) == 5


def test_client_failures_in_a_few_words():
    assert httpserver.describe_failure(ConnectionResetError(104, "reset")) == "hung up"
    assert httpserver.describe_failure(BrokenPipeError(32, "pipe")) == "hung up"
    assert httpserver.describe_failure(TimeoutError("timed out")) == "timed out"
    err = ssl.SSLError(1, "[SSL: HTTP_REQUEST] http request")
    err.reason = "HTTP_REQUEST"
    assert httpserver.describe_failure(err) == "TLS handshake failed (HTTP_REQUEST)"


def test_a_full_server_cuts_the_longest_waiting_idle_client_for_a_scrape():
    registry = CollectorRegistry()
    Counter("probe", "A probe.", registry=registry).inc()
    out = io.StringIO()
    server = httpserver.make_server("127.0.0.1", 0, registry, webconfig.WebConfig(),
                                    log=httpserver.QuietLog("x", stream=out), max_connections=4,
                                    read_timeout=30)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        for s in idle:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
        time.sleep(0.3)
        assert server.connection_count() == 4
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert b"probe_total 1.0" in resp.read()
        idle[0].settimeout(5)
        assert idle[0].recv(100) == b""  # the oldest idle one was cut for room
        assert "Traceback" not in out.getvalue() and out.getvalue() == ""  # cutting is not news
    finally:
        server.shutdown()
        server.server_close()
