"""Compile, load, attach, and always detach: the tracer lifecycle."""
from __future__ import annotations

import contextlib
import importlib.resources
import os
import re
import signal
import time
from typing import Callable

from tracers.runtime import multiattach, planner
from tracers.runtime.capture import quiet_stderr
from tracers.runtime.errors import LoadError, Stop
from tracers.runtime.stats import STAT_DEFINES
from tracers.spec import Hook, TracerSpec

DEFINE_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
PLAIN_FILE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def cflags_for(defines: dict[str, int]) -> list[str]:
    """-D flags from validated integers: nothing textual reaches the C code."""
    flags = []
    for name, value in sorted(defines.items()):
        if not DEFINE_NAME.fullmatch(name):
            raise ValueError(f"bad define name {name!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"define {name} must be an integer, got {value!r}")
        flags.append(f"-D{name}={value}")
    return flags


def c_source(spec: TracerSpec) -> str:
    """The numbers the header shares with Python, the header, then the tracer's file.

    BCC rewrites map calls (table.lookup(...)) only in the main file, so the
    header is prepended rather than #included; its guard makes the
    tracer's own #include "bpfwatch.h" a no-op.
    """
    files = importlib.resources.files("bpf_c")
    shared = "".join(f"#define {name} {value}\n" for name, value in STAT_DEFINES.items())
    return (shared + files.joinpath("bpfwatch.h").read_text()
            + line_directive(spec.c_file) + files.joinpath(spec.c_file).read_text())


def line_directive(c_file: str) -> str:
    """Compiler messages name the tracer's file by its plain name, never its
    path: a user program's directory may hold a quote, a newline and C."""
    name = os.path.basename(c_file)
    return f'#line 1 "{name}"\n' if PLAIN_FILE_NAME.fullmatch(name) else "#line 1\n"


def c_include_dir() -> str:
    # bpf_c ships as a plain package directory (editable or installed).
    return str(importlib.resources.files("bpf_c"))


def render_source(spec: TracerSpec, defines: dict[str, int]) -> str:
    """The program as compiled (and as --ebpf prints it): the validated
    defines as #define lines, then the shared header and the C file."""
    cflags_for(defines)  # names and integers only
    head = [f"#define {k} {v}" for k, v in sorted(defines.items())]
    return "\n".join(["// bpfwatch " + spec.name, *head, "", c_source(spec)])


class Session:
    """A loaded and attached tracer; a context manager that always detaches.

    attachers: callables for hooks the runtime does not attach itself
    (tc, socket_filter, xdp, perf_event): f(session, hook) -> None. They
    register their own cleanup with session.on_close().
    """

    def __init__(self, spec: TracerSpec, defines: dict[str, int] | None = None,
                 probe=None, force: str | None = None, offsets_from: str = "auto",
                 attachers: dict[str, Callable] | None = None, pid: int = -1,
                 skip: set[str] | frozenset = frozenset()):
        from tracers.runtime import get_probe
        self.spec = spec
        self.probe = probe or get_probe()
        from tracers.runtime import privileges, syscall_table
        syscall_table.require_for(spec)
        self.plan = planner.require(spec, self.probe, force, offsets_from)
        self.alternative = self.plan.alternative
        self.defines = dict(defines or {})
        self.defines.update(self.plan.offsets)
        if self.alternative.define:
            self.defines[self.alternative.define] = 1
        self.attachers = attachers or {}
        self.pid = pid
        self.skip = set(skip)  # entry points the chosen options do not need
        privileges.require_for_hooks([h for h in self.alternative.hooks if h.fn not in self.skip],
                                     spec.name)
        self.bpf = None
        self.compile_seconds = 0.0
        self._cleanups: list[Callable[[], None]] = []
        self._batch_ok: dict[str, bool] = {}

    def on_close(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def __enter__(self) -> "Session":
        try:
            self._compile()
            for hook in self.alternative.hooks:
                if hook.fn not in self.skip:
                    self._attach(hook)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def source(self) -> str:
        """Exactly the text compiled: the chosen alternative's define and the
        BTF offsets included (what --ebpf prints)."""
        return render_source(self.spec, self.defines)

    def _compile(self) -> None:
        from bcc import BPF
        started = time.monotonic()
        llvm_exit = f"bpfwatch: {self.spec.name}: BPF program failed to compile: "
        with quiet_stderr(if_exit=llvm_exit) as log:
            try:
                self.bpf = BPF(text=self.source().encode(), cflags=[f"-I{c_include_dir()}"])
            except Exception as exc:
                headers = self.probe.headers
                if headers.mode == "none":  # BCC's own words would be a shell error
                    raise LoadError(f"{self.spec.name}: {headers.detail}", log.text) from None
                raise LoadError(f"{self.spec.name}: BPF program failed to compile/load: "
                                f"{log.first_error() or exc}", log.text) from None
        self.compile_seconds = time.monotonic() - started

    def _attach(self, hook: Hook) -> None:
        if hook.kind in self.attachers:
            self.attachers[hook.kind](self, hook)
            return
        target = planner.resolve_target(hook)
        b = self.bpf
        calls = {
            "tracepoint": lambda: b.attach_tracepoint(tp=target, fn_name=hook.fn),
            "raw_tracepoint": lambda: b.attach_raw_tracepoint(tp=target, fn_name=hook.fn),
            "kprobe": lambda: b.attach_kprobe(event=target, fn_name=hook.fn),
            # never maxactive: that path goes through tracefs and leaks on SIGKILL
            "kretprobe": lambda: b.attach_kretprobe(event=target, fn_name=hook.fn),
            # ours, not BCC's: its uprobes cannot share a function (multiattach.uprobe_event)
            "uprobe": lambda: multiattach.for_session(self).user(hook.fn, target, pid=self.pid),
            "uretprobe": lambda: multiattach.for_session(self).user(hook.fn, target, ret=True,
                                                                    pid=self.pid),
            # BCC attaches KFUNC_PROBE/KRETFUNC_PROBE/LSM_PROBE programs when it loads them
            "fentry": lambda: None, "fexit": lambda: None, "lsm": lambda: None,
        }
        if hook.kind not in calls:
            raise LoadError(f"{self.spec.name}: no attacher for {hook.kind} hooks")
        with quiet_stderr() as log:
            try:
                calls[hook.kind]()
            except Exception as exc:
                if hook.optional:
                    return
                raise LoadError(f"{self.spec.name}: cannot attach {hook.kind} {target}: "
                                f"{log.first_error() or exc}", log.text) from None

    def close(self) -> None:
        """Run cleanups (newest first), then detach and unload everything.

        SIGINT/SIGTERM wait until this is done, so a second Ctrl-C cannot
        leave a tc filter or probe behind."""
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self._close()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    def _close(self) -> None:
        while self._cleanups:
            fn = self._cleanups.pop()
            with contextlib.suppress(Exception):
                fn()
        if self.bpf is not None:
            with quiet_stderr(), contextlib.suppress(Exception):
                self.bpf.cleanup()
            self.bpf = None

    # -- reading ---------------------------------------------------------------
    def read_map(self, name: str) -> list:
        """All (key, value) pairs of a map, batched when the kernel allows."""
        from tracers.runtime.maps import read_items
        items, self._batch_ok[name] = read_items(self.bpf[name], self._batch_ok.get(name, True))
        return items

    def stats(self) -> dict[str, int]:
        """Kernel-side self-telemetry from the shared bpfwatch_stats array."""
        from tracers.runtime.stats import read_stats
        return read_stats(self.bpf)

    def poll_events(self, map_name: str, callback: Callable, until: float | None,
                    batch_done: Callable[[], None] = lambda: None,
                    settle: Callable[[], None] = lambda: None) -> None:
        """Stream a ring buffer into callback(record) until `until` (monotonic),
        then batch_done() after each batch (a flush of buffered output);
        settle() runs once before the last drain (records the kernel holds back)."""
        from tracers.runtime import ringbuf
        table = self.bpf[map_name]
        try:
            decoder = ringbuf.decoder_for(table)
        except SystemExit:  # BCC exits when it cannot map an event struct to ctypes
            raise LoadError(f"{self.spec.name}: BCC cannot decode the events of "
                            f"{map_name} (nested struct or 2-D array?)") from None
        with deferred_signals():
            if ringbuf.ORDERED_LOADS:
                reader = ringbuf.Reader(table.map_fd, table.max_entries, decoder)
                try:
                    ringbuf.pace(reader, lambda: reader.drain(callback), until, stop_requested, batch_done)
                    settle()
                    reader.drain(callback)  # what is already in the buffer, even on Ctrl-C
                    batch_done()
                finally:
                    reader.close()
            else:
                self._poll_with_libbpf(table, lambda data: callback(decoder.decode_bytes(data)),
                                       until, batch_done, settle)

    def _poll_with_libbpf(self, table, handle, until, batch_done, settle) -> None:
        """libbpf's consumer and a C callback per event: for CPUs where our
        plain loads could see a record before its bytes."""
        import ctypes
        failures = []

        def on_event(_ctx, data, size):
            if failures:  # one bad event stops the stream instead of flooding stderr
                return -1
            try:
                handle(ctypes.string_at(data, size))
            except Exception as exc:  # a raise would be swallowed by the C caller
                failures.append(exc)
                return -1
            return 0
        table.open_ring_buffer(on_event)
        while not failures and not stop_requested() and (until is None or time.monotonic() < until):
            timeout = 100 if until is None else max(1, min(100, int((until - time.monotonic()) * 1000)))
            self.bpf.ring_buffer_poll(timeout)
            batch_done()
        if not failures:
            settle()
            self.bpf.ring_buffer_consume()
            batch_done()
        if failures:
            raise failures[0]


class _SignalState:
    defer = False  # inside C callbacks (ring buffer) a raise would be swallowed
    pending = 0


_signals = _SignalState()


@contextlib.contextmanager
def stop_on_signals():
    """Turn SIGINT and SIGTERM into Stop so every `with` block unwinds."""
    def handler(signum, _frame):
        if _signals.defer:
            _signals.pending = signum
        else:
            raise Stop(signum)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _signals.defer, _signals.pending = False, 0
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred_signals():
    """Record SIGINT/SIGTERM instead of raising; check with stop_requested().
    Inside hold_signals() a signal already recorded stays recorded."""
    held = _signals.defer
    if not held:
        _signals.defer, _signals.pending = True, 0
    try:
        yield
    finally:
        _signals.defer = held


def hold_signals() -> None:
    """From the ready line on, a Ctrl-C is recorded, not raised, until the
    tracer's loop takes over: a stop that early still drains and reports."""
    _signals.defer, _signals.pending = True, 0


def release_signals(raise_pending: bool = True) -> None:
    """Signals raise Stop again; one that came while held is raised now."""
    _signals.defer = False
    if raise_pending and _signals.pending:
        signum, _signals.pending = _signals.pending, 0
        raise Stop(signum)


def stop_requested() -> bool:
    return bool(_signals.pending)


def require_root() -> None:
    """The old name: checks capabilities (CapEff), not the uid; per-hook
    needs are checked once the session knows its hooks."""
    from tracers.runtime import privileges
    privileges.require(privileges.BASE)
