// funclatency: time from a function's entry to its return, as a log2
// histogram. Entry and return programs work for kprobes, uprobes and
// fentry/fexit alike: they read no arguments, only the clock.
#include "bpfwatch.h"
#ifdef HOOK_UPROBE
#include <uapi/linux/ptrace.h>
#endif

#ifndef UNIT_NS  // ns per unit: 1, 1000 (-u) or 1000000 (-m)
#error "UNIT_NS must be passed by Python (tracers/tools/funclatency.py)"
#endif

#ifndef MAX_DEPTH  // entry times kept per thread: a power of two
#error "MAX_DEPTH must be passed by Python (tracers/tools/funclatency.py)"
#endif

// A recursive function is entered again before it returns: each thread
// keeps a stack of entry times. Levels beyond MAX_DEPTH are counted in
// `overflows`, not timed (their entry time is not kept).
//
// In user space a call can end without returning (longjmp, a C++
// exception): its uretprobe never fires. Each level keeps its stack pointer,
// and a level that a later entry or return shows to be gone is dropped and
// counted in `abandoned`, so it never times another call.
struct entry_stack {
    u64 depth;  // calls under way, kept or not
    u64 began[MAX_DEPTH];
#ifdef HOOK_UPROBE
    u64 sp[MAX_DEPTH];  // stack pointer at entry: where the return address is
#endif
};

BPF_HASH(start, u32, struct entry_stack, 10240);  // tid -> entry times
BPF_PERCPU_ARRAY(empty_stack, struct entry_stack, 1);  // never written: zeroes (over 512 bytes)
BPF_PERCPU_ARRAY(overflows, u64, 1);  // calls nested deeper than MAX_DEPTH
BPF_PERCPU_ARRAY(abandoned, u64, 1);  // calls that never returned (uprobes)
BPF_PERCPU_ARRAY(dist, u64, 65);      // log2 slot -> calls
BPF_PERCPU_ARRAY(dist_sum, u64, 1);   // total latency, UNIT_NS units

#ifdef HOOK_UPROBE
// Drop the levels on top whose frames lie below `limit` on the stack: they
// are gone. Overflowed levels (no stack pointer kept) lie deeper than the
// deepest kept one: they go when it goes.
static __always_inline void drop_gone(struct entry_stack *s, u64 limit)
{
    u64 depth = s->depth, gone = 0;
    if (depth > MAX_DEPTH && s->sp[MAX_DEPTH - 1] < limit) {
        gone = depth - (MAX_DEPTH - 1);
        depth = MAX_DEPTH - 1;
    }
    for (int i = 0; i < MAX_DEPTH; i++) {
        if (!depth || depth > MAX_DEPTH || s->sp[(depth - 1) & (MAX_DEPTH - 1)] >= limit)
            break;
        depth--;
        gone++;
    }
    if (gone) {
        u32 first = 0;
        s->depth = depth;
        bpfwatch_add(abandoned.lookup(&first), gone);
    }
}
#endif

int on_entry(void *ctx)
{
    if (bpfwatch_filtered_out())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    struct entry_stack *s = start.lookup(&tid);
    if (!s) {
        u32 first = 0;
        struct entry_stack *empty = empty_stack.lookup(&first);
        if (!empty)
            return 0;
        bpfwatch_checked_update(start.update(&tid, empty));
        s = start.lookup(&tid);
        if (!s)
            return 0;
    }
#ifdef HOOK_UPROBE
    u64 sp = PT_REGS_SP((struct pt_regs *)ctx);
    drop_gone(s, sp + 1);  // a live caller's frame lies above ours
#endif
    u64 depth = s->depth;
    if (depth < MAX_DEPTH) {
        s->began[depth & (MAX_DEPTH - 1)] = now;
#ifdef HOOK_UPROBE
        s->sp[depth & (MAX_DEPTH - 1)] = sp;
#endif
    } else {
        u32 first = 0;
        bpfwatch_add(overflows.lookup(&first), 1);
    }
    s->depth = depth + 1;
    return 0;
}

int on_return(void *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct entry_stack *s = start.lookup(&tid);
    if (!s)
        return 0;
#ifdef HOOK_UPROBE
    // `ret` popped the return address: the returning level's entry stack
    // pointer is 8 below ours (x86-64; the same on arm64, where it is equal)
    drop_gone(s, PT_REGS_SP((struct pt_regs *)ctx) - 8);
#endif
    if (!s->depth)
        return 0;
    u64 depth = s->depth - 1;
    s->depth = depth;
    if (depth >= MAX_DEPTH)
        return 0;  // an overflowed level: counted at entry
    u64 delta = (bpf_ktime_get_ns() - s->began[depth & (MAX_DEPTH - 1)]) / UNIT_NS;
    if (!depth)
        start.delete(&tid);
    u32 slot = bpfwatch_log2_slot(delta), first = 0;
    bpfwatch_hist_add(dist.lookup(&slot), dist_sum.lookup(&first), delta);
    return 0;
}
