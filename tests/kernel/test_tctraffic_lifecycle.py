"""tctraffic's lifecycle on both hooks: after every ending nothing of ours
stays (tcx: not even after SIGKILL); on the clsact path, whether a filter's
owner lives is decided by a lock the kernel drops when it dies (never by a
PID), and only a qdisc that a bpfwatch made is ever removed."""
import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, bpf_objects, wait_gone
from test_tctraffic import HOOKS, PORT_X, UDP4, Receiver, ping, results, send, start

pytestmark = pytest.mark.kernel

ENTRY_POINTS = {"on_ingress", "on_egress"}
FOREIGN = "prio 7 protocol ip u32 match ip dst 192.0.2.1/32 flowid 1:1"


def tc_state(pair) -> dict:
    """filters per direction as (kind, bpf name or u32 match), qdisc kinds."""
    state = {}
    for direction in ("ingress", "egress"):
        out = pair.run(pair.a, f"tc -j filter show dev {pair.if_a} {direction}").stdout
        state[direction] = sorted({(f["kind"], f["options"].get("bpf_name", "")) for f in
                                   json.loads(out or "[]") if "options" in f})
    out = pair.run(pair.a, f"tc -j qdisc show dev {pair.if_a}").stdout
    state["qdiscs"] = sorted(q["kind"] for q in json.loads(out))
    return state


def ours(pid, made_qdisc: bool):
    """Our (egress, ingress) filters; the names say whether a bpfwatch made the qdisc."""
    suffix = "-madeqdisc" if made_qdisc else ""
    return [("bpf", f"bpfwatch-{pid}-egress{suffix}")], [("bpf", f"bpfwatch-{pid}-ingress{suffix}")]


def add_foreign(pair) -> dict:
    assert pair.run(pair.a, f"tc qdisc add dev {pair.if_a} clsact").returncode == 0
    for direction in ("ingress", "egress"):
        assert pair.run(pair.a, f"tc filter add dev {pair.if_a} {direction} {FOREIGN}").returncode == 0
    return tc_state(pair)


def new_objects(before: dict) -> dict:
    """Our programs, their links and maps that were not there before."""
    now = bpf_objects(ENTRY_POINTS)
    objects = {kind: now[kind] - before[kind] for kind in ("prog", "link")}
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                                      text=True).stdout)
    objects["map"] = {m for p in progs if p["id"] in objects["prog"] for m in p.get("map_ids", [])}
    return objects


def maps_left(ids: set, timeout: float = 10.0) -> set:
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True).stdout
        left = ids & {m["id"] for m in json.loads(out or "[]")}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.mark.parametrize("foreign", [True, False])
@pytest.mark.parametrize("ending", ["duration", "SIGINT", "SIGTERM"])
@pytest.mark.parametrize("hook", HOOKS)
def test_exit_leaves_only_what_was_there(tracer, netns_pair, hook, ending, foreign):
    pair = netns_pair
    before = add_foreign(pair) if foreign else tc_state(pair)
    objects_before = bpf_objects(ENTRY_POINTS)
    run = start(tracer, pair, *(["-d", "1"] if ending == "duration" else []), hook=hook)
    during, objects = tc_state(pair), new_objects(objects_before)
    assert len(objects["prog"]) == 2
    if hook == "tcx":  # links, no qdisc, no filter
        assert during == before and len(objects["link"]) == 2
    else:
        egress, ingress = ours(run.pid, made_qdisc=not foreign)
        assert during["egress"] == sorted(before["egress"] + egress)
        assert during["ingress"] == sorted(before["ingress"] + ingress)
    if ending == "duration":
        assert run.wait(30) == 0
    else:
        assert run.stop(getattr(signal, ending)) == 0
    assert tc_state(pair) == before
    assert wait_gone(objects_before, names=ENTRY_POINTS) == {"prog": set(), "link": set()}
    assert maps_left(objects["map"]) == set()


def test_sigkill_on_tcx_leaves_nothing_and_traffic_flows_at_once(tracer, netns_pair):
    pair = netns_pair
    before = tc_state(pair)
    for _ in range(3):
        objects_before = bpf_objects(ENTRY_POINTS)
        run = start(tracer, pair, "--block", f"{pair.ip_b}/32", hook="tcx")
        objects = new_objects(objects_before)
        assert (len(objects["prog"]), len(objects["link"])) == (2, 2) and objects["map"]
        ping(pair, 10, pair.ip_b, received=0)
        assert run.stop(signal.SIGKILL) == -9
        # the kernel detached the links when the killed process's fds closed
        assert not bpf_objects(ENTRY_POINTS)["link"] & objects["link"]
        ping(pair, 20, pair.ip_b)
        assert tc_state(pair) == before
        assert wait_gone(objects_before, names=ENTRY_POINTS) == {"prog": set(), "link": set()}
        assert maps_left(objects["map"]) == set()


@pytest.mark.parametrize("foreign", [True, False])
def test_sigkill_on_clsact_then_restart_cleans_up(tracer, netns_pair, foreign):
    pair = netns_pair
    before = add_foreign(pair) if foreign else tc_state(pair)
    objects_before = bpf_objects(ENTRY_POINTS)
    first = start(tracer, pair, hook="clsact")
    assert first.stop(signal.SIGKILL) == -9
    # The kernel keeps filters (and their programs) of a killed owner...
    egress, ingress = ours(first.pid, made_qdisc=not foreign)
    assert tc_state(pair)["ingress"] == sorted(before["ingress"] + ingress)
    assert len(new_objects(objects_before)["prog"]) == 2
    # ...until the next start removes them, and its exit removes its own
    # (and the qdisc the killed one made).
    second = start(tracer, pair, hook="clsact")
    egress, ingress = ours(second.pid, made_qdisc=not foreign)
    assert tc_state(pair)["ingress"] == sorted(before["ingress"] + ingress)
    assert tc_state(pair)["egress"] == sorted(before["egress"] + egress)
    assert second.stop() == 0
    assert tc_state(pair) == before
    assert wait_gone(objects_before, names=ENTRY_POINTS) == {"prog": set(), "link": set()}


def test_instance_in_another_pid_namespace_leaves_a_live_block_alone(tracer, netns_pair):
    pair = netns_pair
    before = tc_state(pair)
    recv = Receiver(pair, pair.b, PORT_X)
    first = start(tracer, pair, "--block", f"{pair.ip_b}/32", hook="clsact")
    send(pair, pair.a, pair.ip_b, PORT_X, 13)
    # Its PID means nothing in the second one's PID namespace (nor its /proc).
    second = subprocess.run(pair.exec(pair.a, "unshare", "--pid", "--fork", "--mount-proc",
                                      sys.executable, "-m", "tracers", "tctraffic", pair.if_a,
                                      "--hook", "clsact", "-d", "1"),
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    egress, ingress = ours(first.pid, made_qdisc=True)
    assert tc_state(pair)["egress"] == egress and tc_state(pair)["ingress"] == ingress
    send(pair, pair.a, pair.ip_b, PORT_X, 17)  # still dropped
    assert recv.finish() == {PORT_X: 0}
    assert first.stop() == 0
    assert results(first)[1] == {("egress", f"{pair.ip_b}/32"): (30, 30 * UDP4)}
    assert tc_state(pair) == before


def test_operator_clsact_created_after_a_kill_is_left_alone(tracer, netns_pair):
    pair = netns_pair
    first = start(tracer, pair, hook="clsact")
    assert first.stop(signal.SIGKILL) == -9
    # the operator replaces the qdisc the killed bpfwatch made (its filters go with it)
    assert pair.run(pair.a, f"tc qdisc del dev {pair.if_a} clsact && "
                            f"tc qdisc add dev {pair.if_a} clsact").returncode == 0
    operator = tc_state(pair)
    assert "clsact" in operator["qdiscs"]
    second = start(tracer, pair, "-d", "0.5", hook="clsact")
    egress, ingress = ours(second.pid, made_qdisc=False)
    assert tc_state(pair)["ingress"] == ingress
    assert second.wait(30) == 0
    assert tc_state(pair) == operator


@pytest.mark.parametrize("hook", HOOKS)
def test_an_ingress_qdisc_blocks_only_the_clsact_hook(tracer, netns_pair, hook):
    pair = netns_pair
    assert pair.run(pair.a, f"tc qdisc add dev {pair.if_a} ingress").returncode == 0
    before = tc_state(pair)
    proc = subprocess.run(pair.exec(pair.a, sys.executable, "-m", "tracers", "tctraffic", pair.if_a,
                                    "--hook", hook, "-d", "0.5", "--json"),
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    if hook == "clsact":
        assert proc.returncode == 1
        assert len(proc.stderr.strip().splitlines()) == 1 and "'ingress' qdisc" in proc.stderr
    else:  # tcx runs beside any qdisc
        assert proc.returncode == 0, proc.stderr
    assert tc_state(pair) == before
