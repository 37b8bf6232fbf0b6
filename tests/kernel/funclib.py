"""A small shared library and a program calling it through the PLT."""
import subprocess

LIB_C = r"""
#include <time.h>
__attribute__((noinline)) int bpfw_target(int x) { return x * 3 + 1; }
__attribute__((noinline)) int bpfw_other(int x) { return x ^ 5; }
__attribute__((noinline)) void bpfw_nap(long ns)
{
    struct timespec t = {0, ns};
    nanosleep(&t, 0);
}
/* Each level is a real call (through a volatile pointer: no loop, no tail call). */
__attribute__((noinline)) int bpfw_recurse(int depth);
static int (*volatile recurse_again)(int) = bpfw_recurse;
__attribute__((noinline)) int bpfw_recurse(int depth)
{
    return depth <= 1 ? 1 : 1 + recurse_again(depth - 1);
}
"""
MAIN_C = r"""
#include <stdio.h>
#include <stdlib.h>
int bpfw_target(int); int bpfw_other(int); void bpfw_nap(long); int bpfw_recurse(int);
int main(int argc, char **argv)
{
    int target = atoi(argv[1]), other = atoi(argv[2]), naps = atoi(argv[3]), acc = 0;
    int recursions = atoi(argv[4]), depth = atoi(argv[5]);
    getchar();  /* the test says go once the tracer is attached */
    for (int i = 0; i < target; i++) acc += bpfw_target(i);
    for (int i = 0; i < other; i++) acc += bpfw_other(i);
    for (int i = 0; i < naps; i++) bpfw_nap(200000);
    for (int i = 0; i < recursions; i++) acc += bpfw_recurse(depth);
    printf("%d\n", acc);
    return 0;
}
"""


def build(tmp_path):
    """(library path, program path)"""
    (tmp_path / "lib.c").write_text(LIB_C)
    (tmp_path / "main.c").write_text(MAIN_C)
    lib, prog = tmp_path / "libbpfw.so", tmp_path / "work"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", lib, tmp_path / "lib.c"], check=True)
    subprocess.run(["gcc", "-O2", "-o", prog, tmp_path / "main.c", f"-L{tmp_path}", "-lbpfw",
                    f"-Wl,-rpath,{tmp_path}"], check=True)
    return lib, prog


def start(prog, target=0, other=0, naps=0, recursions=0, depth=0):
    """recursions x bpfw_recurse(depth): recursions * depth calls, nested depth deep."""
    return subprocess.Popen([prog, str(target), str(other), str(naps), str(recursions), str(depth)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def go(proc):
    out, _ = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    return out
