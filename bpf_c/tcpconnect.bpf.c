// tcpconnect: active TCP opens, one record per connect() attempt when it
// resolves (established, refused, failed) with its latency. The source
// port is picked after the socket enters SYN_SENT, so the attempt is
// recorded there, in connect() and so in the caller's context, and
// reported when the socket leaves SYN_SENT (usually in softirq).
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"
#include "tcpcommon.h"

// sk_err says why an attempt failed: BTF offset (-D) unless headers match.
#ifndef OFF_SK_ERR
#include <net/sock.h>
#define OFF_SK_ERR offsetof(struct sock, sk_err)
#endif

struct attempt {
    u64 ts;
    u64 cgroup_id;
    u32 pid;
    u32 pad;
    char comm[16];
};

struct connect_event {
    u64 ts;
    u64 latency_ns;
    u64 cgroup_id;
    u32 pid;
    s32 err;          // sk_err when the attempt failed (ECONNREFUSED, ...)
    u32 established;
    TCP_TUPLE_FIELDS
    char comm[16];
};

struct dest_count {
    u64 connects;
    u64 failed;
};

BPF_TABLE("lru_hash", u64, struct attempt, attempts, 65536);
#ifdef COUNT_ONLY
BPF_TABLE("lru_hash", struct peer_key, struct dest_count, dests, 10240);
#else
BPF_RINGBUF_OUTPUT(events, 64);  // pages: 256 KiB
#endif

static __always_inline int on_state(const void *sk, int oldstate, int newstate,
                                    struct tcp_tuple *t)
{
    u64 key = (u64)sk;
    if (newstate == BW_SYN_SENT) {
        if (bpfwatch_filtered_out())
            return 0;
        struct attempt a = {.ts = bpf_ktime_get_ns(), .cgroup_id = bpf_get_current_cgroup_id()};
        a.pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(a.comm, sizeof(a.comm));
        bpfwatch_checked_update(attempts.update(&key, &a));
        return 0;
    }
    if (oldstate != BW_SYN_SENT)
        return 0;
    struct attempt *a = attempts.lookup(&key);
    if (!a)
        return 0;
    if (tuple_filtered_out(t))
        goto done;
    u32 ok = newstate != BW_CLOSE;
#ifdef COUNT_ONLY
    struct peer_key k = {};
    struct dest_count zero = {};
    peer_key_of(&k, t, t->rport);
    struct dest_count *c = bpfwatch_checked_init(dests.lookup_or_try_init(&k, &zero));
    if (c) {
        __sync_fetch_and_add(&c->connects, 1);
        if (!ok)
            __sync_fetch_and_add(&c->failed, 1);
    }
#else
    struct connect_event e = {.pid = a->pid, .established = ok, .cgroup_id = a->cgroup_id};
    e.ts = bpf_ktime_get_ns();
    e.latency_ns = e.ts - a->ts;
    COPY_TUPLE(&e, t);
    __builtin_memcpy(e.comm, a->comm, sizeof(e.comm));
    if (!ok)
        bpf_probe_read_kernel(&e.err, sizeof(e.err), (const char *)sk + OFF_SK_ERR);
    if (events.ringbuf_output(&e, sizeof(e), 0))
        bpfwatch_count(BPFWATCH_STAT_EVENTS_DROPPED);
#endif
done:
    attempts.delete(&key);
    return 0;
}

BW_SET_STATE_ENTRY
