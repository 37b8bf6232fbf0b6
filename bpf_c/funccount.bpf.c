// funccount: calls counted per probe in the kernel.
// One program is attached to every matched function, tracepoint or user
// function; each attachment carries its probe index as the BPF cookie, so
// no function name ever reaches this file.
#include "bpfwatch.h"

#ifndef NPROBES
#error "NPROBES must be passed by Python (tracers/tools/funccount.py)"
#endif

BPF_PERCPU_ARRAY(counts, u64, NPROBES);  // probe index -> calls

int on_count(void *ctx)
{
    if (bpfwatch_filtered_out())
        return 0;
    u32 index = bpf_get_attach_cookie(ctx);
    u64 *n = counts.lookup(&index);
    if (n)
        (*n)++;
    return 0;
}
