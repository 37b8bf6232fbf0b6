"""The `vm` tier: tests that need a stock kernel (kprobes, fentry).

On the host, the first `vm` test boots Debian's kernel under qemu once and
runs every selected `vm` test inside it (same tree, same venv); each host
test then reports its guest result. Inside the guest (BPFWATCH_IN_VM=1)
the tests run normally and their outcomes are written to a shared file.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

IN_VM = os.environ.get("BPFWATCH_IN_VM") == "1"
RESULTS_ENV = "BPFWATCH_VM_RESULTS"
VM_TIMEOUT = float(os.environ.get("BPFWATCH_VM_TIMEOUT", "1800"))
_state: dict = {}


def _run_batch(session) -> dict:
    """Boot once, run all selected vm tests inside, return {nodeid: report}."""
    sys.path.insert(0, str(Path(__file__).parent / "vm"))
    import vmrun

    nodeids = [i.nodeid for i in session.items if "vm" in i.keywords]
    share = tempfile.mkdtemp(prefix="bpfwatch-vm-")
    results = os.path.join(share, "results.json")
    args = " ".join(f"'{n}'" for n in nodeids)
    command = (f"BPFWATCH_IN_VM=1 {RESULTS_ENV}={results} .venv/bin/python -m pytest "
               f"-p no:cacheprovider -q -m vm {args}")  # --durations: pyproject
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


def _guest_outcome(item):
    def runtest():
        if "batch" not in _state:
            _state["batch"] = _run_batch(item.session)
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


def pytest_terminal_summary(terminalreporter):
    """The guest's slowest tests, where the VM tier's time goes."""
    output = _state.get("batch", {}).get("__output__", "")
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "slowest" in line and "durations" in line), None)
    if start is not None:
        terminalreporter.section("stock-kernel VM: slowest tests")
        for line in lines[start + 1:]:
            if not line.strip() or line.startswith("="):
                break
            terminalreporter.write_line(line)


def pytest_runtest_logreport(report):
    if IN_VM:
        _record(report)
