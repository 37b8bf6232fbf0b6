// tcpretrans: TCP retransmissions with addresses, ports and state, always
// counted per state (the exporter's metric), per flow with -c, streamed
// otherwise. Most run from the retransmit timer: no process is reported.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"
#include "tcpcommon.h"

struct retrans_event {
    u64 ts;
    u32 state;
    TCP_TUPLE_FIELDS
};

struct state_key {
    u32 family;
    u32 state;
};

BPF_HASH(retrans_by_state, struct state_key, u64, 64);
#ifdef COUNT_FLOWS
BPF_TABLE("lru_hash", struct tcp_tuple, u64, flows, 10240);
#endif
#ifndef COUNT_ONLY  // the exporter only counts
BPF_RINGBUF_OUTPUT(events, 64);  // pages: 256 KiB
#endif

static __always_inline int on_retrans(struct tcp_tuple *t, u32 state)
{
    if (tuple_filtered_out(t))
        return 0;
    u64 zero = 0;
    struct state_key sk = {.family = t->family, .state = state};
    bpfwatch_add(retrans_by_state.lookup_or_try_init(&sk, &zero), 1);
#ifdef COUNT_FLOWS
    bpfwatch_add(flows.lookup_or_try_init(t, &zero), 1);
#endif
#ifndef COUNT_ONLY
    struct retrans_event e = {.state = state};
    e.ts = bpf_ktime_get_ns();
    COPY_TUPLE(&e, t);
    if (events.ringbuf_output(&e, sizeof(e), 0))
        bpfwatch_count(BPFWATCH_STAT_EVENTS_DROPPED);
#endif
    return 0;
}

#ifdef HOOK_TRACEPOINT
int on_retransmit(struct tracepoint__tcp__tcp_retransmit_skb *args)
{
    struct tcp_tuple t = {};
    TUPLE_FROM_TP(&t, args);
    return on_retrans(&t, args->state);
}
#endif

#ifdef HOOK_KPROBE
// tcp_retransmit_skb(sk, skb, segs)
int on_retransmit(struct pt_regs *ctx)
{
    const void *sk = (const void *)PT_REGS_PARM1(ctx);
    struct tcp_tuple t = {};
    tuple_from_sk(&t, sk);
    return on_retrans(&t, bw_sk_state(sk));
}
#endif
