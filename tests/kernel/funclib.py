"""A small shared library and a program calling it through the PLT."""
import subprocess

LIB_C = r"""
#include <setjmp.h>
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
/* depth nested calls; given a jmp_buf, the deepest leaves them all by longjmp */
__attribute__((noinline)) int bpfw_escape(int depth, jmp_buf *out);
static int (*volatile escape_again)(int, jmp_buf *) = bpfw_escape;
__attribute__((noinline)) int bpfw_escape(int depth, jmp_buf *out)
{
    if (depth <= 1) {
        if (out)
            longjmp(*out, 1);
        return 1;
    }
    return 1 + escape_again(depth - 1, out);
}
"""
MAIN_C = r"""
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
int bpfw_target(int); int bpfw_other(int); void bpfw_nap(long); int bpfw_recurse(int);
int bpfw_escape(int, jmp_buf *);
int main(int argc, char **argv)
{
    int target = atoi(argv[1]), other = atoi(argv[2]), naps = atoi(argv[3]), acc = 0;
    int recursions = atoi(argv[4]), depth = atoi(argv[5]);
    int escapes = atoi(argv[6]), escape_depth = atoi(argv[7]), returns = atoi(argv[8]);
    jmp_buf out;
    getchar();  /* the test says go once the tracer is attached */
    for (int i = 0; i < target; i++) acc += bpfw_target(i);
    for (int i = 0; i < other; i++) acc += bpfw_other(i);
    for (int i = 0; i < naps; i++) bpfw_nap(200000);
    for (int i = 0; i < recursions; i++) acc += bpfw_recurse(depth);
    for (int i = 0; i < escapes; i++)
        if (!setjmp(out)) bpfw_escape(escape_depth, &out);
    for (int i = 0; i < returns; i++) acc += bpfw_escape(escape_depth, 0);
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


def start(prog, target=0, other=0, naps=0, recursions=0, depth=0, escapes=0, escape_depth=0,
          returns=0):
    """recursions x bpfw_recurse(depth): recursions * depth calls, nested depth deep.
    Then escapes x bpfw_escape(escape_depth) left by longjmp from the deepest
    level, and returns x bpfw_escape(escape_depth) that return."""
    counts = (target, other, naps, recursions, depth, escapes, escape_depth, returns)
    return subprocess.Popen([prog, *map(str, counts)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def go(proc):
    out, _ = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    return out
