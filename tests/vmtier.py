"""The `vm` tier: tests that need a stock kernel (kprobes, fentry).

On the host, Debian's kernel boots under qemu once, in the background as
the run starts, and runs every selected `vm` test inside it (same tree,
same venv) while the host tiers run; each host `vm` test then waits for and
reports its guest result (the two tiers overlap: the suite takes the longer
of them instead of their sum). Inside the guest (BPFWATCH_IN_VM=1)
the tests run normally and their outcomes are written to a shared file.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path

import pytest

IN_VM = os.environ.get("BPFWATCH_IN_VM") == "1"
RESULTS_ENV = "BPFWATCH_VM_RESULTS"
VM_TIMEOUT = float(os.environ.get("BPFWATCH_VM_TIMEOUT", "1800"))
_state: dict = {}


def _run_batch(nodeids: list[str]) -> dict:
    """Boot once, run these vm tests inside, return {nodeid: report}."""
    sys.path.insert(0, str(Path(__file__).parent / "vm"))
    import vmrun

    share = tempfile.mkdtemp(prefix="bpfwatch-vm-")
    results = os.path.join(share, "results.json")
    args = " ".join(f"'{n}'" for n in nodeids)
    command = (f"BPFWATCH_IN_VM=1 {RESULTS_ENV}={results} .venv/bin/python -m pytest "
               f"-p no:cacheprovider -q -m vm {args}")
    try:
        result = vmrun.run_in_vm(command, timeout=VM_TIMEOUT, share_dir=share)
    except vmrun.VMError as exc:
        tail = "\n".join(exc.console.splitlines()[-20:])
        return {"__error__": f"the stock-kernel VM did not run the tests: {exc}\n{tail}"}
    if not os.path.exists(results):
        return {"__error__": f"the VM run wrote no results (exit {result.returncode}):\n"
                             + result.output[-4000:]}
    with open(results) as f:
        reports = json.load(f)
    reports["__output__"] = result.output
    return reports


def proxy_on_host(items) -> None:
    """On the host, a vm test neither sets up fixtures nor runs its body
    here: its outcome is its outcome inside the guest."""
    if IN_VM:
        return
    for item in items:
        if "vm" in item.keywords:
            item.setup = lambda: None
            item.runtest = _guest_outcome(item)


def start_batch(session) -> None:
    """The guest run, in a thread, as the test loop starts (not when only
    collecting). qemu dies with this process (pdeathsig) if the run ends early."""
    if IN_VM or session.config.option.collectonly or "thread" in _state:
        return
    nodeids = [i.nodeid for i in session.items if "vm" in i.keywords]
    if not nodeids or os.geteuid() != 0:
        return

    def run():
        try:
            _state["batch"] = _run_batch(nodeids)
        except BaseException as exc:  # reported by each vm test, not lost in the thread
            _state["batch"] = {"__error__": f"the VM run failed: {exc!r}"}
    _state["thread"] = threading.Thread(target=run, name="vm-tier", daemon=True)
    _state["thread"].start()


def pytest_runtestloop(session):
    start_batch(session)  # returns None: pytest's own loop runs the tests


def _guest_outcome(item):
    def runtest():
        start_batch(item.session)  # a run whose loop hook did not start it
        _state["thread"].join()
        batch = _state["batch"]
        if "__error__" in batch:
            pytest.fail(batch["__error__"], pytrace=False)
        report = batch.get(item.nodeid)
        if report is None:
            pytest.fail("no result from the VM for this test:\n" + batch["__output__"][-3000:],
                        pytrace=False)
        if report["outcome"] != "passed":
            pytest.fail(f"in the stock-kernel VM ({report['outcome']}):\n{report['longrepr']}",
                        pytrace=False)
    return runtest


def _record(report) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    results = json.load(open(path)) if os.path.exists(path) else {}
    previous = results.get(report.nodeid, {}).get("outcome")
    failed = report.outcome == "failed" or previous == "failed"
    if report.when == "call" or report.outcome != "passed":
        outcome = "failed" if failed else report.outcome
        results[report.nodeid] = {"outcome": outcome, "longrepr": str(report.longrepr or "")[-6000:]}
        with open(path, "w") as f:
            json.dump(results, f)


def pytest_runtest_logreport(report):
    if IN_VM:
        _record(report)
