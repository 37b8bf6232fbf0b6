"""The exporter's HTTP side: bounded connections, bounded time, quiet logs.

One thread per connection (the scrape itself is a blocking map read), but:
- at most `max_connections` at once; when full, the connection that has
  waited longest without sending a complete request is cut to make room
  (an idle or half-sent request must not keep a scraper out), and when
  every slot is busy serving, the newcomer is refused;
- a client has `read_timeout` seconds from connect to a complete request
  (TLS handshake included), and `request_timeout` seconds in all;
- a client failure (hang-up, failed handshake, plain HTTP on the TLS port)
  is one log line at most, and those lines are rate-limited.
"""
from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from prometheus_client.exposition import MetricsHandler

from exporters import exposition, shared_scrape, webconfig
from tracers.runtime.errors import BpfwatchError

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_READ_TIMEOUT = 10.0
REQUEST_TIMEOUT = 60.0  # a scrape of large maps to a slow reader, in all
REAP_EVERY = 0.2


class QuietLog:
    """At most `burst` lines per `window` seconds; the rest are counted and
    summed up in one line when the window has passed."""

    def __init__(self, prefix: str, burst: int = 5, window: float = 10.0, stream=None):
        self.prefix, self.burst, self.window = prefix, burst, window
        self.stream = stream
        self._lock = threading.Lock()
        self._start, self._shown, self._suppressed = time.monotonic(), 0, 0

    def __call__(self, message: str) -> None:
        with self._lock:
            self._roll(time.monotonic())
            if self._shown < self.burst:
                self._shown += 1
                self._write(message)
            else:
                self._suppressed += 1

    def flush(self) -> None:
        with self._lock:
            self._roll(float("inf"))

    def _roll(self, now: float) -> None:
        if now - self._start < self.window:
            return
        if self._suppressed:
            self._write(f"{self._suppressed} more client failures not shown (at most "
                        f"{self.burst} per {self.window:g}s)")
        self._start, self._shown, self._suppressed = time.monotonic(), 0, 0

    def _write(self, message: str) -> None:
        stream = self.stream or sys.stderr
        print(f"{self.prefix}: {message}", file=stream, flush=True)


def describe_failure(exc: BaseException) -> str:
    """A client's failure in a few words (no traceback: it is the client's doing)."""
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or str(exc)
        return f"TLS handshake failed ({reason})"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, (ConnectionError, EOFError)):
        return "hung up"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Connection:
    sock: socket.socket
    peer: str
    head_deadline: float
    deadline: float
    serving: bool = False  # a complete request arrived: never cut for room
    cut: bool = False


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the accept loop is fast; a burst waits in the kernel

    def __init__(self, address, handler, *, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 read_timeout: float = DEFAULT_READ_TIMEOUT, request_timeout: float = REQUEST_TIMEOUT,
                 log: QuietLog, family: int = socket.AF_INET):
        self.address_family = family
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.request_timeout = max(request_timeout, read_timeout)
        self.log = log
        self._connections: dict[socket.socket, _Connection] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.shared_scrapes = shared_scrape.SharedScrapes()
        super().__init__(address, handler)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        # The reaper starts here, not in __init__: the exporter drops
        # capabilities after binding, and a thread started earlier keeps them.
        threading.Thread(target=self._reap, name="http-reaper", daemon=True).start()
        super().serve_forever(poll_interval)

    # -- admission -------------------------------------------------------------
    def process_request(self, request, client_address) -> None:
        peer = client_address[0] if client_address else "?"
        now = time.monotonic()
        with self._lock:
            live = [c for c in self._connections.values() if not c.cut]
            if len(live) >= self.max_connections:
                waiting = [c for c in live if not c.serving]
                # cut threads still unwinding count too: threads stay bounded
                if not waiting or len(self._connections) >= 2 * self.max_connections:
                    self.log(f"{peer}: refused: {len(live)} connections busy (--max-connections)")
                    self.shutdown_request(request)
                    return
                self._cut(min(waiting, key=lambda c: c.head_deadline))
            self._connections[request] = _Connection(request, peer, now + self.read_timeout,
                                                     now + self.request_timeout)
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread to be had: refuse this one
            with self._lock:
                self._connections.pop(request, None)
            self.log(f"{peer}: refused: cannot start a thread")
            self.shutdown_request(request)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._connections.pop(request, None)

    def request_complete(self, request) -> None:
        """The handler has a whole request: from now on only the total deadline applies."""
        with self._lock:
            conn = self._connections.get(request)
            if conn is not None:
                conn.serving = True

    def _cut(self, conn: _Connection) -> None:
        conn.cut = True
        try:  # the plain socket's shutdown (not SSLSocket's): wakes the blocked thread
            socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def _reap(self) -> None:
        while not self._closing.wait(REAP_EVERY):
            now = time.monotonic()
            with self._lock:
                for conn in list(self._connections.values()):
                    limit = conn.deadline if conn.serving else conn.head_deadline
                    if not conn.cut and now > limit:
                        self._cut(conn)

    # -- failures ----------------------------------------------------------------
    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if self.was_cut(request):
            return  # we cut it (timeout or room): already decided, not news
        peer = client_address[0] if client_address else "?"
        self.log(f"{peer}: {describe_failure(exc) if exc else 'failed'}")

    def was_cut(self, request) -> bool:
        with self._lock:
            conn = self._connections.get(request)
        return conn is not None and conn.cut

    def server_close(self) -> None:
        self._closing.set()
        super().server_close()
        self.log.flush()

    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)


class Handler(MetricsHandler):
    """/metrics, /healthz and a small index page, all behind the web config's auth."""
    web: webconfig.WebConfig = webconfig.WebConfig()
    health = staticmethod(lambda: (True, "ok"))  # () -> (healthy, text)

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # per read; the reaper bounds the total
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()  # here, in this thread, not in the accept loop
        super().setup()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:
            self.server.request_complete(self.request)
        return ok

    def do_GET(self) -> None:
        if not self.web.authorized(self.headers.get("Authorization")):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="bpfwatch"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = urlparse(self.path).path
        if path == "/metrics":  # as MetricsHandler, with map families from cached label strings
            headers, body = exposition.bake(self.registry, self.headers.get("Accept"),
                                            self.headers.get("Accept-Encoding"), parse_qs(urlparse(self.path).query),
                                            shared=self.server.shared_scrapes)
            self.send_response(200)
            for header in headers:
                self.send_header(*header)
            self.end_headers()
            self.wfile.write(body)
            return
        if path == "/healthz":
            healthy, text = self.health()
            self._reply(200 if healthy else 503, "text/plain; charset=utf-8", text.encode() + b"\n")
            return
        if path == "/":
            self._reply(200, "text/html", b'<html><body><a href="/metrics">bpfwatch metrics</a> '
                                          b'<a href="/healthz">health</a></body></html>\n')
            return
        self._reply(404, "text/plain", b"not found\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-") -> None:
        """Successful requests are not news."""

    def log_error(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        if format.startswith("Request timed out"):
            if self.server.was_cut(self.request):
                return  # cut for room or by the reaper: not news
            format, args = "timed out before sending a whole request", ()
        self.log_message(format, *args)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        # Reached through log_error: a malformed request, a read timeout.
        self.server.log(f"{self.client_address[0]}: {format % args if args else format}")


def make_server(host: str, port: int, registry, web: webconfig.WebConfig, *, health=None,
                log: QuietLog, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                read_timeout: float = DEFAULT_READ_TIMEOUT) -> Server:
    attrs = {"registry": registry, "web": web}
    if health is not None:
        attrs["health"] = staticmethod(health)
    handler = type("BoundHandler", (Handler,), attrs)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        server = Server((host, port), handler, max_connections=max_connections,
                        read_timeout=read_timeout, log=log, family=family)
    except OSError as exc:
        raise BpfwatchError(f"cannot listen on {host or '*'}:{port}: {exc.strerror}") from None
    context = web.ssl_context()
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server
