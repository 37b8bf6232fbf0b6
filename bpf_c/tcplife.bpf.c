// tcplife: one record per TCP connection when it closes, with its owner,
// exact bytes each way and its lifetime. Driven by socket state changes.
//
// The close usually runs in softirq, where the current task is arbitrary,
// so the owner is recorded in process context: at connect() (SYN_SENT); for
// accepted sockets, the process that called listen(), replaced by the one
// whose close() queues our FIN (FIN_WAIT1 / LAST_ACK).
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"
#include "tcpcommon.h"

// tcp_sock/sock fields: BTF offsets (-D) unless the headers match the kernel.
#ifndef OFF_TCP_SOCK_BYTES_ACKED
#include <net/sock.h>
#include <linux/tcp.h>
#endif
#ifndef OFF_TCP_SOCK_BYTES_ACKED
#define OFF_TCP_SOCK_BYTES_ACKED offsetof(struct tcp_sock, bytes_acked)
#endif
#ifndef OFF_TCP_SOCK_BYTES_RECEIVED
#define OFF_TCP_SOCK_BYTES_RECEIVED offsetof(struct tcp_sock, bytes_received)
#endif
#ifndef OFF_TCP_SOCK_SND_UNA
#define OFF_TCP_SOCK_SND_UNA offsetof(struct tcp_sock, snd_una)
#endif
#ifndef OFF_TCP_SOCK_WRITE_SEQ
#define OFF_TCP_SOCK_WRITE_SEQ offsetof(struct tcp_sock, write_seq)
#endif
#ifndef OFF_SK_FLAGS
#define OFF_SK_FLAGS offsetof(struct sock, __sk_common.skc_flags)
#endif
#define BW_SOCK_DONE 1  // enum sock_flags: set by tcp_fin(), the peer's FIN
#ifndef MAX_SOCKS
#define MAX_SOCKS 65536
#endif

// bytes_acked and bytes_received count sequence space: our SYN and FIN
// once acknowledged, the peer's FIN once received. These flags say which
// to take off to get payload bytes.
#define CONN_SYN_ACKED 1   // active open that got past SYN_SENT
#define CONN_FIN_QUEUED 2  // close()/shutdown() queued our FIN (FIN_WAIT1/LAST_ACK)

struct conn {
    u64 born;
    u64 cgroup_id;  // bpfwatch_owner_cgroup() of the owner
    u32 pid;
    u16 passive;  // accepted: a later close() in process context knows better
    u16 flags;
    char comm[16];
};

struct listener {
    u64 sk;
    u64 cgroup_id;
    u32 pid;
    u32 pad;
    char comm[16];
};

struct life_event {
    u64 ts;
    u64 duration_ns;
    u64 bytes_sent;      // payload acknowledged by the peer
    u64 bytes_received;  // payload received in sequence
    u64 cgroup_id;
    u32 pid;
    TCP_TUPLE_FIELDS
    char comm[16];
};

struct family_key {
    u32 family;
};

struct hist_key {
    u32 family;
    u32 slot;  // log2 of the lifetime in microseconds
};

struct totals {
    u64 connections;
    u64 bytes_sent;
    u64 bytes_received;
};

BPF_TABLE("lru_hash", u64, struct conn, conns, MAX_SOCKS);
BPF_TABLE("lru_hash", u32, struct listener, listeners, 4096);  // family << 16 | port
BPF_HASH(life_totals, struct family_key, struct totals, 16);
BPF_HASH(life_hist, struct hist_key, u64, 256);
BPF_HASH(life_us_sum, struct family_key, u64, 16);
#ifndef COUNT_ONLY  // the exporter only counts
BPF_RINGBUF_OUTPUT(events, 64);  // pages: 256 KiB
#endif

static __always_inline void account(struct life_event *e)
{
    struct family_key fk = {.family = e->family};
    struct totals zero = {};
    struct totals *tot = bpfwatch_checked_init(life_totals.lookup_or_try_init(&fk, &zero));
    if (!tot)
        return;
    __sync_fetch_and_add(&tot->connections, 1);
    __sync_fetch_and_add(&tot->bytes_sent, e->bytes_sent);
    __sync_fetch_and_add(&tot->bytes_received, e->bytes_received);
    u64 us = e->duration_ns / 1000, none = 0;
    struct hist_key hk = {.family = e->family, .slot = bpfwatch_log2_slot(us)};
    bpfwatch_add(life_hist.lookup_or_try_init(&hk, &none), 1);
    bpfwatch_add(life_us_sum.lookup_or_try_init(&fk, &none), us);
}

static __always_inline u64 read_u64(const void *sk, u64 off)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (const char *)sk + off);
    return v;
}

static __always_inline void payload_bytes(struct life_event *e, const void *sk, u16 flags)
{
    u32 una = 0, write_seq = 0;
    u64 acked = read_u64(sk, OFF_TCP_SOCK_BYTES_ACKED);
    u64 received = read_u64(sk, OFF_TCP_SOCK_BYTES_RECEIVED);
    bpf_probe_read_kernel(&una, sizeof(una), (const char *)sk + OFF_TCP_SOCK_SND_UNA);
    bpf_probe_read_kernel(&write_seq, sizeof(write_seq), (const char *)sk + OFF_TCP_SOCK_WRITE_SEQ);
    u64 seq_only = (flags & CONN_SYN_ACKED ? 1 : 0) +
                   ((flags & CONN_FIN_QUEUED) && una == write_seq ? 1 : 0);
    e->bytes_sent = acked > seq_only ? acked - seq_only : 0;
    u64 fin_in = (read_u64(sk, OFF_SK_FLAGS) >> BW_SOCK_DONE) & 1;
    e->bytes_received = received > fin_in ? received - fin_in : 0;
}

static __always_inline void set_owner(struct conn *c)
{
    c->pid = bpf_get_current_pid_tgid() >> 32;
    c->cgroup_id = bpfwatch_owner_cgroup();
    bpf_get_current_comm(c->comm, sizeof(c->comm));
}

static __always_inline int on_state(const void *sk, int oldstate, int newstate,
                                    struct tcp_tuple *t)
{
    u64 key = (u64)sk, now = bpf_ktime_get_ns();
    u32 lkey = (u32)t->family << 16 | t->lport;

    if (newstate == BW_LISTEN) {
        struct listener me = {.sk = key, .cgroup_id = bpfwatch_owner_cgroup()};
        me.pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(me.comm, sizeof(me.comm));
        bpfwatch_checked_update(listeners.update(&lkey, &me));
        return 0;
    }
    if (oldstate == BW_LISTEN) {
        struct listener *l = listeners.lookup(&lkey);
        if (newstate == BW_CLOSE) {
            if (l && l->sk == key)
                listeners.delete(&lkey);
            return 0;
        }
        struct conn child = {.born = now, .passive = 1};  // -> SYN_RECV
        if (l) {
            child.pid = l->pid;
            child.cgroup_id = l->cgroup_id;
            __builtin_memcpy(child.comm, l->comm, sizeof(child.comm));
        }
        bpfwatch_checked_update(conns.update(&key, &child));
        return 0;
    }
    if (newstate == BW_SYN_SENT) {
        struct conn me = {.born = now};
        set_owner(&me);
        bpfwatch_checked_update(conns.update(&key, &me));
        return 0;
    }
    struct conn *c = conns.lookup(&key);
    if (!c) {
        // Handshake under way when tracing began (or a kprobe on a kernel
        // that creates children without tcp_set_state): born now.
        if (newstate != BW_ESTABLISHED)
            return 0;
        struct conn fresh = {.born = now, .passive = oldstate != BW_SYN_SENT};
        c = bpfwatch_checked_init(conns.lookup_or_try_init(&key, &fresh));
        if (!c)
            return 0;
    }
    if (oldstate == BW_SYN_SENT && newstate != BW_CLOSE)
        c->flags |= CONN_SYN_ACKED;
    if (newstate == BW_FIN_WAIT1 || newstate == BW_LAST_ACK) {
        c->flags |= CONN_FIN_QUEUED;
        if (c->passive || !c->pid)  // close() runs in the owner's context
            set_owner(c);
    }
    if (newstate != BW_CLOSE)
        return 0;

    if (tuple_filtered_out(t) || owner_filtered_out(c->pid, c->comm, c->cgroup_id))
        goto done;
    struct life_event e = {.ts = now, .duration_ns = now - c->born, .pid = c->pid,
                           .cgroup_id = c->cgroup_id};
    COPY_TUPLE(&e, t);
    __builtin_memcpy(e.comm, c->comm, sizeof(e.comm));
    payload_bytes(&e, sk, c->flags);
    // A child that dies in SYN_RECV having carried nothing never was a
    // connection: when two CPUs complete one handshake at once, both clone a
    // child and the loser is closed at once (inet_ehash_nolisten).
    if (oldstate == BW_SYN_RECV && !e.bytes_sent && !e.bytes_received)
        goto done;
    account(&e);
#ifndef COUNT_ONLY
    if (events.ringbuf_output(&e, sizeof(e), 0))
        bpfwatch_count(BPFWATCH_STAT_EVENTS_DROPPED);
#endif
done:
    conns.delete(&key);
    return 0;
}

// Children of listeners are born SYN_RECV without tcp_set_state: under the
// kprobe their lifetime starts at ESTABLISHED.
BW_SET_STATE_ENTRY
