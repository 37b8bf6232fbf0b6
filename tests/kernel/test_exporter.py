"""The exporter on the host kernel: exact deltas, promtool, programs, security, leaks."""
import http.client
import json
import os
import time
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import bcrypt
import pytest

from conftest import probe_events, unique_name
from exporter_helpers import (ERRORS_TOML, READS_TOML, exporter_cli, failing_calls, samples, scrape,
                              start_exporter, value, write)

pytestmark = pytest.mark.kernel

READS = """
import ctypes, os, sys
libc = ctypes.CDLL(None)
libc.prctl(15, sys.argv[1].encode())  # PR_SET_NAME: only our reads carry this comm
fd = os.open("/dev/zero", os.O_RDONLY)
for size, times in ((100, 5), (5000, 3)):
    for _ in range(times):
        assert len(os.read(fd, size)) == size
"""


@pytest.fixture(scope="module")
def exporter():
    """One exporter for the module: two built-in tracers and both example programs."""
    proc, url = start_exporter("--tracers", "syscount,execsnoop", "--program", ERRORS_TOML,
                               "--program", READS_TOML, "--per-process")
    yield proc, url
    assert proc.stop(signal.SIGTERM) == 0
    proc.close()


def test_exact_counter_deltas_between_two_scrapes(exporter):
    _, url = exporter
    before = samples(scrape(url))
    failing_calls(37)
    after = samples(scrape(url))
    for name, labels in (("bpfwatch_syscalls_total", {"syscall": "sched_get_priority_min"}),
                         ("bpfwatch_syscall_errors_total",
                          {"syscall": "sched_get_priority_min", "errno": "EINVAL"})):
        assert value(after, name, **labels) - value(before, name, **labels) == 37, name


def test_failed_execs_are_counted_by_errno(exporter, tmp_path):
    _, url = exporter
    junk = tmp_path / "not-a-program"
    junk.write_bytes(b"\x00\x01\x02 neither ELF nor a script\n")
    junk.chmod(0o755)
    before = samples(scrape(url))
    for _ in range(7):
        with pytest.raises(OSError) as err:
            subprocess.run([str(junk)])
        assert err.value.errno == 8  # ENOEXEC: rare enough to count exactly
    after = samples(scrape(url))
    delta = lambda name, **kw: value(after, name, **kw) - value(before, name, **kw)
    assert delta("bpfwatch_exec_failures_total", errno="ENOEXEC") == 7
    assert delta("bpfwatch_execs_total") >= 7


def test_histogram_of_read_sizes_per_comm(exporter):
    _, url = exporter
    comm = unique_name("rdsz")
    subprocess.run([sys.executable, "-c", READS, comm], check=True, timeout=30)
    got = samples(scrape(url))
    bucket = lambda le: value(got, "bpfwatch_read_size_bytes_bucket", comm=comm, le=le)
    # 100 bytes: slot 7 (64..127, le 128); 5000 bytes: slot 13 (4096..8191, le 8192)
    assert (bucket("64.0"), bucket("128.0"), bucket("4096.0"), bucket("8192.0"), bucket("+Inf")) == (0, 5, 5, 8, 8)
    assert value(got, "bpfwatch_read_size_bytes_count", comm=comm) == 8
    assert value(got, "bpfwatch_read_size_bytes_sum", comm=comm) == 5 * 100 + 3 * 5000


def test_exposition_passes_promtool_and_has_self_telemetry(exporter):
    _, url = exporter
    text = scrape(url)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    got = samples(text)
    for tracer, hook in (("syscount", "raw_tracepoint"), ("execsnoop", "tracepoint"),
                         ("syscall_errors", "raw_tracepoint"), ("read_sizes", "tracepoint")):
        assert value(got, "bpfwatch_program_attached", tracer=tracer, hook=hook) == 1
        assert ("bpfwatch_events_dropped_total", frozenset({"tracer": tracer}.items())) in got
        assert ("bpfwatch_map_update_failures_total", frozenset({"tracer": tracer}.items())) in got
    assert value(got, "bpfwatch_map_max_entries", tracer="syscount", map="syscalls") == 512
    assert value(got, "bpfwatch_map_max_entries", tracer="syscall_errors", map="errors") == 4096
    assert 0 < value(got, "bpfwatch_map_entries", tracer="syscall_errors", map="errors") <= 4096
    assert any(name == "bpfwatch_build_info" for name, _ in got)
    assert value(got, "bpfwatch_scrape_duration_seconds") > 0


def test_check_loads_every_builtin_tracer_and_both_examples():
    """Every tracer that declares metrics and runs with its default options."""
    from exporters.daemon import builtin_job
    from tracers.registry import tracer_classes
    from tracers.runtime import BpfwatchError
    names = []
    for name, module in tracer_classes().items():
        try:
            builtin_job(module)
        except BpfwatchError:  # needs options (an interface, ...): not an exporter default
            assert not module.spec.exporter_default, name
            continue
        if module.spec.metrics:
            names.append(name)
    run = exporter_cli("--check", "--tracers", ",".join(names), "--program", ERRORS_TOML,
                       "--program", READS_TOML, timeout=300)
    assert run.returncode == 0, run.stderr
    for name in [*names, "syscall_errors", "read_sizes"]:
        assert f"\n{name} " in "\n" + run.stdout
    assert "bpfwatch_syscall_errors_total{syscall,errno}" in run.stdout


def test_missing_hook_is_reported_or_fatal_with_strict(tmp_path):
    c_file = tmp_path / "kp.bpf.c"
    c_file.write_text(open(READS_TOML.replace(".toml", ".bpf.c")).read())
    toml = write(tmp_path / "kp.toml", f"""
name = "kprobe_only"
c_file = "{c_file}"
[[alternatives]]
name = "kretprobe"
define = "HOOK_KPROBE"
hooks = [{{ kind = "kretprobe", target = "syscall:read", fn = "on_read_exit" }}]
[[metrics]]
name = "kp_reads"
kind = "histogram"
buckets = "exp2"
help = "Reads."
map = "read_sizes"
""")
    kprobes = os.path.exists("/sys/bus/event_source/devices/kprobe")
    lenient = exporter_cli("--check", "--tracers", "syscount", "--program", toml)
    strict = exporter_cli("--check", "--strict", "--tracers", "syscount", "--program", toml)
    if kprobes:  # a kernel with kprobes attaches it: both pass
        assert lenient.returncode == strict.returncode == 0
        return
    assert lenient.returncode == 0, lenient.stderr
    assert "kprobe_only" in lenient.stdout and "NOT ATTACHED" in lenient.stdout
    assert "syscount         raw_tracepoint   attached" in lenient.stdout
    assert strict.returncode == 1
    assert strict.stderr.count("\n") == 1 and "kprobe_only: no usable hook" in strict.stderr


@pytest.mark.parametrize("args, message", [
    (["--program", "{bad_toml}"], "metrics[0].kind: must be counter, gauge or histogram, got 'countr'"),
    (["--web-config", "{bad_yaml}"], "basic_auth_users.prom: must be a bcrypt hash"),
    (["--tracers", "syscount,nosuch"], "unknown tracer 'nosuch'"),
    (["--listen", "localhost:99999"], "is not HOST:PORT"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, message):
    bad_toml = write(tmp_path / "bad.toml", open(ERRORS_TOML).read().replace(
        'kind = "counter"', 'kind = "countr"').replace('"syscall_errors.bpf.c"',
                                                       f'"{ERRORS_TOML[:-5]}.bpf.c"'))
    bad_yaml = write(tmp_path / "web.yml", "basic_auth_users:\n  prom: plaintext\n")
    run = exporter_cli(*[a.format(bad_toml=bad_toml, bad_yaml=bad_yaml) for a in args])
    assert run.returncode != 0
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_default_bind_is_loopback_and_basic_auth_over_tls(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem"],
                   check=True, capture_output=True)
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(4)).decode()
    web = write(tmp_path / "web.yml", f"tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                                      f"basic_auth_users:\n  prom: '{hashed}'\n")
    proc, url = start_exporter("--tracers", "none", "--program", ERRORS_TOML, "--web-config", web,
                               "--listen", "127.0.0.1:10100")
    try:
        assert url == "https://127.0.0.1:10100/metrics"
        listening = subprocess.run(["ss", "-Hltnp", "sport = :10100"], capture_output=True, text=True).stdout
        assert f"pid={proc.pid}," in listening and "127.0.0.1:10100" in listening
        tls = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))

        def get(password):
            req = urllib.request.Request(url)
            if password is not None:
                import base64
                req.add_header("Authorization", "Basic " + base64.b64encode(f"prom:{password}".encode()).decode())
            try:
                with urllib.request.urlopen(req, context=tls, timeout=10) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, ""
        assert get(None)[0] == 401
        assert get("wrong")[0] == 401
        status, body = get("right")
        assert status == 200 and "bpfwatch_program_attached" in body
        with pytest.raises((OSError, http.client.HTTPException)):  # no plain HTTP
            urllib.request.urlopen(url.replace("https", "http"), timeout=5)
    finally:
        assert proc.stop(signal.SIGTERM) == 0
        proc.close()
    from exporters.daemon import build_parser
    assert build_parser().parse_args([]).listen == ("127.0.0.1", 10100)


def owned_bpf_ids(pid: int) -> set:
    """("prog"|"link", id) of every BPF object the process holds an fd of.

    Per process, so tracers others load at the same time do not count."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            text = open(f"/proc/{pid}/fdinfo/{fd}").read()
        except OSError:
            continue
        for line in text.splitlines():
            kind, _, value = line.partition(":\t")
            if kind in ("prog_id", "link_id"):
                ids.add((kind[:4], int(value)))
    return ids


def live_bpf_ids() -> set:
    out = set()
    for kind in ("prog", "link"):
        text = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True).stdout
        out |= {(kind, item["id"]) for item in json.loads(text or "[]")}
    return out


@pytest.mark.parametrize("ending", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_nothing_left_after(ending):
    events_before = probe_events()
    proc, _ = start_exporter("--tracers", "syscount", "--program", ERRORS_TOML, "--program", READS_TOML)
    try:
        held = owned_bpf_ids(proc.pid)
        assert sum(kind == "prog" for kind, _ in held) >= 3, held
        assert proc.stop(getattr(signal, ending)) == (-9 if ending == "SIGKILL" else 0)
    finally:
        proc.close()
    deadline = time.monotonic() + 10  # the kernel frees programs asynchronously
    while held & live_bpf_ids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not held & live_bpf_ids()
    assert probe_events() == events_before
