// tcpaccept: passive TCP opens. With the tracepoint, a record when the
// handshake completes (SYN_RECV -> ESTABLISHED: the connection is ready to
// accept). That runs in softirq, where the current task is arbitrary, so
// pid/comm are the process that called listen() on the listening socket the
// connection was queued on (SO_REUSEPORT: one of several on the port, named
// by its sk_data_ready), or for a listener older than the trace or a kernel
// without sk_data_ready, on the port (0 and "" if unknown). The kprobe
// alternative traces inet_csk_accept's return, in the accepting process.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"
#include "tcpcommon.h"

struct listener {
    u64 sk;
    u64 cgroup_id;  // bpfwatch_owner_cgroup() of the listen() caller
    u32 pid;
    u32 lkey;  // family << 16 | port
    char comm[16];
};

struct accept_event {
    u64 ts;
    u64 cgroup_id;
    u32 pid;
    TCP_TUPLE_FIELDS
    char comm[16];
};

#ifdef COUNT_ONLY
BPF_TABLE("lru_hash", struct peer_key, u64, accepts, 10240);
#else
BPF_RINGBUF_OUTPUT(events, 64);  // pages: 256 KiB
#endif

static __always_inline int report(const struct tcp_tuple *t, u32 pid, const char *comm, u64 cgroup)
{
    if (tuple_filtered_out(t) || owner_filtered_out(pid, comm, cgroup))
        return 0;
#ifdef COUNT_ONLY
    struct peer_key k = {};
    u64 zero = 0;
    peer_key_of(&k, t, t->lport);
    bpfwatch_add(accepts.lookup_or_try_init(&k, &zero), 1);
#else
    struct accept_event e = {.pid = pid, .cgroup_id = cgroup};
    e.ts = bpf_ktime_get_ns();
    COPY_TUPLE(&e, t);
    __builtin_memcpy(e.comm, comm, sizeof(e.comm));
    if (events.ringbuf_output(&e, sizeof(e), 0))
        bpfwatch_count(BPFWATCH_STAT_EVENTS_DROPPED);
#endif
    return 0;
}

// The by-port alternative is the tracepoint one without sk_data_ready.
#ifdef HOOK_TRACEPOINT
#define HAS_SK_DATA_READY 1
#elif defined(HOOK_TRACEPOINT_BY_PORT)
#define HOOK_TRACEPOINT 1
#define HAS_SK_DATA_READY 0
#endif

#ifdef HOOK_TRACEPOINT
BPF_TABLE("lru_hash", u32, struct listener, listeners, 4096);  // family << 16 | port: last listen()
BPF_TABLE("lru_hash", u64, struct listener, listener_socks, 4096);  // listening sk -> owner

static __always_inline int report_owner(const struct tcp_tuple *t, struct listener *l)
{
    struct listener unknown = {};
    if (!l)
        l = &unknown;
    return report(t, l->pid, l->comm, l->cgroup_id);
}

#if HAS_SK_DATA_READY
// The child turns ESTABLISHED in softirq; then, on the same CPU in the same
// softirq, its listener's sk_data_ready wakes accept(): that names the
// listening socket. The child waits here for it.
struct pending_accept {
    u64 child;
    u32 lkey;
    u32 valid;
    struct tcp_tuple t;
};

BPF_PERCPU_ARRAY(pending, struct pending_accept, 1);

// Its listener's wake-up did not come (TCP Fast Open: it came earlier):
// the owner by port.
static __always_inline int report_by_port(struct pending_accept *p)
{
    p->valid = 0;
    return report_owner(&p->t, listeners.lookup(&p->lkey));
}

// Not attached: user space runs it on each CPU (BPF_PROG_TEST_RUN) before
// its last read, so an accept still waiting for a wake-up is not lost.
int on_flush_pending(struct bpf_raw_tracepoint_args *ctx)
{
    u32 first = 0;
    struct pending_accept *p = pending.lookup(&first);
    if (p && p->valid)
        report_by_port(p);
    return 0;
}

int on_data_ready(struct tracepoint__sock__sk_data_ready *args)
{
    u32 first = 0;
    struct pending_accept *p = pending.lookup(&first);
    if (!p || !p->valid)
        return 0;
    u64 sk = (u64)args->skaddr;
    if (sk == p->child)
        return 0;  // the new connection's own data, before its listener's wake-up
    struct listener *l = listener_socks.lookup(&sk);
    if (!l || l->lkey != p->lkey)
        return report_by_port(p);  // a listener older than the trace, or not its listener
    p->valid = 0;
    return report_owner(&p->t, l);
}
#endif

int on_set_state(struct tracepoint__sock__inet_sock_set_state *args)
{
    if (args->protocol != BW_IPPROTO_TCP)
        return 0;
    int oldstate = args->oldstate, newstate = args->newstate;
    u32 lkey = (u32)args->family << 16 | args->sport;
    u64 sk = (u64)args->skaddr;
    if (newstate == BW_LISTEN) {
        struct listener me = {.sk = sk, .cgroup_id = bpfwatch_owner_cgroup(), .lkey = lkey};
        me.pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(me.comm, sizeof(me.comm));
        bpfwatch_checked_update(listeners.update(&lkey, &me));
        bpfwatch_checked_update(listener_socks.update(&sk, &me));
        return 0;
    }
    if (oldstate == BW_LISTEN && newstate == BW_CLOSE) {
        listener_socks.delete(&sk);
        struct listener *l = listeners.lookup(&lkey);
        if (l && l->sk == sk)
            listeners.delete(&lkey);
        return 0;
    }
    if (oldstate != BW_SYN_RECV || newstate != BW_ESTABLISHED)
        return 0;
    struct tcp_tuple t = {};
    TUPLE_FROM_TP(&t, args);
#if HAS_SK_DATA_READY
    u32 first = 0;
    struct pending_accept *p = pending.lookup(&first);
    if (p) {
        if (p->valid)
            report_by_port(p);
        p->child = sk;
        p->lkey = lkey;
        p->t = t;
        p->valid = 1;
        return 0;
    }
#endif
    return report_owner(&t, listeners.lookup(&lkey));
}
#endif

#ifdef HOOK_KPROBE
#ifndef OFF_SK_PROTOCOL
#define OFF_SK_PROTOCOL offsetof(struct sock, sk_protocol)
#endif

int on_accept_return(struct pt_regs *ctx)
{
    const void *sk = (const void *)PT_REGS_RC(ctx);
    u16 protocol = 0;
    if (!sk)
        return 0;
    bpf_probe_read_kernel(&protocol, sizeof(protocol), (const char *)sk + OFF_SK_PROTOCOL);
    if (protocol != BW_IPPROTO_TCP)
        return 0;
    struct tcp_tuple t = {};
    char comm[16] = {};
    tuple_from_sk(&t, sk);
    bpf_get_current_comm(comm, sizeof(comm));
    return report(&t, bpf_get_current_pid_tgid() >> 32, comm, bpfwatch_owner_cgroup());
}
#endif
