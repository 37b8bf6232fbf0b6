// funclatency: time from a function's entry to its return, as a log2
// histogram. Entry and return programs work for kprobes, uprobes and
// fentry/fexit alike: they read no arguments, only the clock.
#include "bpfwatch.h"

#ifndef UNIT_NS  // ns per unit: 1, 1000 (-u) or 1000000 (-m)
#error "UNIT_NS must be passed by Python (tracers/tools/funclatency.py)"
#endif

#ifndef MAX_DEPTH  // entry times kept per thread: a power of two
#error "MAX_DEPTH must be passed by Python (tracers/tools/funclatency.py)"
#endif

// A recursive function is entered again before it returns: each thread
// keeps a stack of entry times. Levels beyond MAX_DEPTH are counted in
// `overflows`, not timed (their entry time is not kept).
struct entry_stack {
    u64 depth;  // calls under way, kept or not
    u64 began[MAX_DEPTH];
};

BPF_HASH(start, u32, struct entry_stack, 10240);  // tid -> entry times
BPF_PERCPU_ARRAY(overflows, u64, 1);  // calls nested deeper than MAX_DEPTH
BPF_PERCPU_ARRAY(dist, u64, 65);      // log2 slot -> calls
BPF_PERCPU_ARRAY(dist_sum, u64, 1);   // total latency, UNIT_NS units

int on_entry(void *ctx)
{
    if (bpfwatch_filtered_out())
        return 0;
    u32 tid = bpf_get_current_pid_tgid(), first = 0;
    u64 now = bpf_ktime_get_ns();
    struct entry_stack *s = start.lookup(&tid);
    if (!s) {
        struct entry_stack empty = {};
        bpfwatch_checked_update(start.update(&tid, &empty));
        s = start.lookup(&tid);
        if (!s)
            return 0;
    }
    u64 depth = s->depth;
    if (depth < MAX_DEPTH) {
        s->began[depth & (MAX_DEPTH - 1)] = now;
    } else {
        u64 *n = overflows.lookup(&first);
        if (n)
            (*n)++;
    }
    s->depth = depth + 1;
    return 0;
}

int on_return(void *ctx)
{
    u32 tid = bpf_get_current_pid_tgid(), first = 0;
    struct entry_stack *s = start.lookup(&tid);
    if (!s || !s->depth)
        return 0;
    u64 depth = s->depth - 1;
    s->depth = depth;
    if (depth >= MAX_DEPTH)
        return 0;  // an overflowed level: counted at entry
    u64 delta = (bpf_ktime_get_ns() - s->began[depth & (MAX_DEPTH - 1)]) / UNIT_NS;
    if (!depth)
        start.delete(&tid);
    u32 slot = bpfwatch_log2_slot(delta);
    bpfwatch_hist_add(dist.lookup(&slot), dist_sum.lookup(&first), delta);
    return 0;
}
