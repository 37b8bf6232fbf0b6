// funclatency: time from a function's entry to its return, as a log2
// histogram. Entry and return programs work for kprobes, uprobes and
// fentry/fexit alike: they read no arguments, only the clock.
#include "bpfwatch.h"

#ifndef UNIT_NS  // ns per unit: 1, 1000 (-u) or 1000000 (-m)
#error "UNIT_NS must be passed by Python (tracers/tools/funclatency.py)"
#endif

BPF_HASH(start, u32, u64, 10240);     // tid -> entry time
BPF_PERCPU_ARRAY(dist, u64, 65);      // log2 slot -> calls
BPF_PERCPU_ARRAY(dist_sum, u64, 1);   // total latency, UNIT_NS units

int on_entry(void *ctx)
{
    if (bpfwatch_filtered_out())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    bpfwatch_checked_update(start.update(&tid, &now));
    return 0;
}

int on_return(void *ctx)
{
    u32 tid = bpf_get_current_pid_tgid(), first = 0;
    u64 *began = start.lookup(&tid);
    if (!began)
        return 0;
    u64 delta = (bpf_ktime_get_ns() - *began) / UNIT_NS;
    start.delete(&tid);
    u32 slot = bpfwatch_log2_slot(delta);
    bpfwatch_hist_add(dist.lookup(&slot), dist_sum.lookup(&first), delta);
    return 0;
}
