// tcpretrans: TCP retransmissions with addresses, ports and state, always
// counted per state (the exporter's metric), per flow with -c, streamed
// otherwise. Most run from the retransmit timer: no process is reported.
// A retransmit is an attempt that sent the segment (err 0). Attempts that
// sent nothing (the qdisc refused it, the original is still queued in this
// host, no route, no memory) are counted apart, never streamed.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"
#include "tcpcommon.h"

#ifndef TP_RETRANSMIT_ERR  // 1: tcp:tcp_retransmit_skb has `err` and fires for every attempt
#error "TP_RETRANSMIT_ERR must be passed by Python (tracers/tools/tcpretrans.py)"
#endif

struct retrans_event {
    u64 ts;
    u32 state;
    TCP_TUPLE_FIELDS
};

struct state_key {
    u32 family;
    u32 state;
};

struct flow_counts {
    u64 retransmits;
    u64 failed;
};

BPF_HASH(retrans_by_state, struct state_key, u64, 64);
BPF_HASH(failed_by_state, struct state_key, u64, 64);  // attempts that sent nothing
#ifdef COUNT_FLOWS
BPF_TABLE("lru_hash", struct tcp_tuple, struct flow_counts, flows, 10240);
#endif
#ifndef COUNT_ONLY  // the exporter only counts
BPF_RINGBUF_OUTPUT(events, 64);  // pages: 256 KiB
#endif

static __always_inline int on_retrans(struct tcp_tuple *t, u32 state, int err)
{
    if (tuple_filtered_out(t))
        return 0;
    u64 zero = 0;
    struct state_key sk = {.family = t->family, .state = state};
    if (err)
        bpfwatch_add(failed_by_state.lookup_or_try_init(&sk, &zero), 1);
    else
        bpfwatch_add(retrans_by_state.lookup_or_try_init(&sk, &zero), 1);
#ifdef COUNT_FLOWS
    struct flow_counts none = {};
    struct flow_counts *f = bpfwatch_checked_init(flows.lookup_or_try_init(t, &none));
    if (f)
        __sync_fetch_and_add(err ? &f->failed : &f->retransmits, 1);
#endif
    if (err)
        return 0;
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
#if TP_RETRANSMIT_ERR
    return on_retrans(&t, args->state, args->err);
#else  // older kernels fire it only for sent retransmits
    return on_retrans(&t, args->state, 0);
#endif
}
#endif

#ifdef HOOK_KPROBE
// Both return 0 when the segment was sent: the entry keeps sk, the return
// reads the result. tcp_retransmit_skb (RTO, fast retransmit) calls
// __tcp_retransmit_skb, which tail loss probes call directly; a kernel build
// may inline that call (6.1 does), so both are probed, and an inner call
// under a traced outer one for the same sk is left to the outer one. A
// softirq may retransmit on top of a retransmitting thread: a small stack
// per thread; a 0 entry is such an inner call.
#define CALL_DEPTH 8
struct pending_calls {
    u64 depth;
    u64 sk[CALL_DEPTH];
};

BPF_HASH(calls, u64, struct pending_calls, 1024);

// The thread; for the idle task (pid 0 on every CPU, never migrating) the CPU.
static __always_inline u64 call_key(void)
{
    u32 tid = bpf_get_current_pid_tgid();
    return tid ? tid : (1ULL << 32) | bpf_get_smp_processor_id();
}

static __always_inline int push_call(u64 sk, int inner)
{
    u64 key = call_key();
    struct pending_calls *c = calls.lookup(&key);
    if (!c) {
        struct pending_calls none = {};
        bpfwatch_checked_update(calls.update(&key, &none));
        c = calls.lookup(&key);
        if (!c)
            return 0;
    }
    u64 depth = c->depth;
    if (inner && depth && depth <= CALL_DEPTH && c->sk[(depth - 1) & (CALL_DEPTH - 1)] == sk)
        sk = 0;  // the outer tcp_retransmit_skb reports it
    if (depth < CALL_DEPTH)
        c->sk[depth & (CALL_DEPTH - 1)] = sk;
    else
        bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);  // this call goes unseen
    c->depth = depth + 1;
    return 0;
}

int on_retransmit(struct pt_regs *ctx)  // tcp_retransmit_skb(sk, skb, segs)
{
    return push_call(PT_REGS_PARM1(ctx), 0);
}

int on_retransmit_inner(struct pt_regs *ctx)  // __tcp_retransmit_skb(sk, skb, segs)
{
    return push_call(PT_REGS_PARM1(ctx), 1);
}

int on_retransmit_return(struct pt_regs *ctx)
{
    u64 key = call_key();
    struct pending_calls *c = calls.lookup(&key);
    if (!c || !c->depth)
        return 0;
    u64 depth = c->depth - 1;
    c->depth = depth;
    if (depth >= CALL_DEPTH)
        return 0;
    const void *sk = (const void *)c->sk[depth & (CALL_DEPTH - 1)];
    if (!depth)
        calls.delete(&key);
    if (!sk)
        return 0;
    struct tcp_tuple t = {};
    tuple_from_sk(&t, sk);
    return on_retrans(&t, bw_sk_state(sk), PT_REGS_RC(ctx));
}
#endif
