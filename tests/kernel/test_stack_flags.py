"""bcc's letters in offcputime and profile: -u/-k pick user or kernel
threads (offcputime), -U/-K user or kernel stacks (both)."""
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.kernel

PF_KTHREAD = 0x00200000
NAPPER = """
import ctypes, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[1].encode())  # PR_SET_NAME: the comm offcputime keys on
sys.stdin.readline()
for _ in range(10):
    time.sleep(0.03)
"""


def is_kernel_thread(pid: int):
    """True/False, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return bool(int(f.read().rsplit(")", 1)[1].split()[6]) & PF_KTHREAD)
    except FileNotFoundError:
        return None


def stacks(run) -> list[dict]:
    return [r for r in run.json_lines() if "summary" not in r]


def test_offcputime_threads_and_stacks(tracer):
    name = f"bpfw_nap{os.getpid() % 10000}"
    user = tracer(["offcputime", "--json", "-u", "-K"])
    kernel = tracer(["offcputime", "--json", "-k", "-U"])
    napper = subprocess.Popen([sys.executable, "-c", NAPPER, name], stdin=subprocess.PIPE, text=True)
    napper.stdin.write("go\n")
    napper.stdin.close()
    assert napper.wait(30) == 0
    time.sleep(0.2)
    assert user.stop() == 0 and kernel.stop() == 0

    users = stacks(user)
    napped = [r for r in users if r["comm"] == name]
    assert napped and sum(r["value"] for r in napped) >= 0.9 * 10 * 30_000  # us
    assert all(r["user_stack"] == [] and r["kernel_stack"] for r in napped)  # -K
    assert not [r for r in users if is_kernel_thread(r["pid"])], users

    kernels = stacks(kernel)
    assert name not in {r["comm"] for r in kernels}
    alive = [is_kernel_thread(r["pid"]) for r in kernels]
    assert True in alive and False not in alive, kernels
    assert all(r["kernel_stack"] == [] for r in kernels)  # -U (kernel threads have no user stack)


SPINNER = "import time\nend = time.monotonic() + 1.5\nwhile time.monotonic() < end: pass\n"


def test_profile_stack_letters(tracer):
    only_user = tracer(["profile", "--json", "-F", "199", "-U"])
    only_kernel = tracer(["profile", "--json", "-F", "199", "-K"])
    subprocess.run([sys.executable, "-c", SPINNER], check=True, timeout=30)
    assert only_user.stop() == 0 and only_kernel.stop() == 0
    users, kernels = stacks(only_user), stacks(only_kernel)
    assert users and all(r["kernel_stack"] == [] for r in users)
    assert any(r["user_stack"] for r in users)
    assert kernels and all(r["user_stack"] == [] for r in kernels)


@pytest.mark.parametrize("argv, words", [
    (["profile", "-u"], "unrecognized arguments: -u"),  # bcc's profile has no thread letters
    (["offcputime", "-U", "-K"], "not allowed with argument"),
])
def test_letters_bcc_does_not_have_are_refused(argv, words):
    proc = subprocess.run([sys.executable, "-m", "tracers", *argv], capture_output=True, text=True,
                          timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
