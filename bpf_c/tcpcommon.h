// Shared by the TCP tracers (tcplife, tcpconnect, tcpaccept, tcpretrans).
// Helpers only: BCC rewrites map calls in the main file alone, so the maps
// stay in each tracer's file. Settings arrive as -D integers.
#ifndef BPFWATCH_TCPCOMMON_H
#define BPFWATCH_TCPCOMMON_H

// Kernel headers cost seconds of compile at every start; with offsets from
// BTF (the usual case) these programs need none, so they include them only
// when the headers match the kernel (no OFF_ defines passed).
#define BW_AF_INET 2
#define BW_AF_INET6 10
#define BW_IPPROTO_TCP 6

// include/net/tcp_states.h, spelled out: the numbers are ABI (tracepoints).
#define BW_ESTABLISHED 1
#define BW_SYN_SENT 2
#define BW_SYN_RECV 3
#define BW_FIN_WAIT1 4
#define BW_CLOSE 7
#define BW_LAST_ACK 9
#define BW_LISTEN 10

// A connection seen from this host: local and remote, ports in host order,
// IPv4 addresses in the first 4 bytes. Events embed the fields flat (BCC's
// ring buffer decoder knows no nested structs) and take them with
// COPY_TUPLE, which relies on the identical layout.
#define TCP_TUPLE_FIELDS \
    u16 family;          \
    u16 lport;           \
    u16 rport;           \
    u16 tuple_pad;       \
    u8 laddr[16];        \
    u8 raddr[16];
struct tcp_tuple {
    TCP_TUPLE_FIELDS
};
#define COPY_TUPLE(e, t) __builtin_memcpy(&(e)->family, (t), sizeof(struct tcp_tuple))

// -c counts: one end's port and both addresses (a destination, a service).
struct peer_key {
    u16 family;
    u16 port;
    u32 pad;
    u8 laddr[16];
    u8 raddr[16];
};

static __always_inline void peer_key_of(struct peer_key *k, const struct tcp_tuple *t, u16 port)
{
    k->family = t->family;
    k->port = port;
    __builtin_memcpy(k->laddr, t->laddr, 16);
    __builtin_memcpy(k->raddr, t->raddr, 16);
}

// A dual-stack (AF_INET6) socket talking IPv4 holds ::ffff:a.b.c.d
// addresses: report it as IPv4, as ss does (-4 finds it, counts go under
// IPv4). A local address not chosen yet (:: at connect()) reads 0.0.0.0.
static __always_inline int bw_v4_mapped(const u8 *a)
{
    u64 zeros = 0;
    u32 ffff = 0;
    __builtin_memcpy(&zeros, a, 8);
    __builtin_memcpy(&ffff, a + 8, 4);
    return zeros == 0 && ffff == bpf_htonl(0xffff);
}

static __always_inline int bw_v6_unspecified(const u8 *a)
{
    u64 w[2] = {};
    __builtin_memcpy(w, a, 16);
    return !w[0] && !w[1];
}

static __always_inline void tuple_unmap_v4(struct tcp_tuple *t)
{
    if (t->family != BW_AF_INET6 || !bw_v4_mapped(t->raddr))
        return;
    int local_mapped = bw_v4_mapped(t->laddr);
    if (!local_mapped && !bw_v6_unspecified(t->laddr))
        return;
    u32 local = 0, remote = 0;
    if (local_mapped)
        __builtin_memcpy(&local, t->laddr + 12, 4);
    __builtin_memcpy(&remote, t->raddr + 12, 4);
    __builtin_memset(t->laddr, 0, 16);
    __builtin_memset(t->raddr, 0, 16);
    __builtin_memcpy(t->laddr, &local, 4);
    __builtin_memcpy(t->raddr, &remote, 4);
    t->family = BW_AF_INET;
}

// sock:inet_sock_set_state and tcp:tcp_retransmit_skb name these fields
// alike (sport is the local port). The tracepoint record is kernel memory.
#define TUPLE_FROM_TP(t, args) do {                                              \
        (t)->family = (args)->family;                                            \
        (t)->lport = (args)->sport;                                              \
        (t)->rport = (args)->dport;                                              \
        if ((args)->family == BW_AF_INET6) {                                        \
            bpf_probe_read_kernel((t)->laddr, 16, (args)->saddr_v6);             \
            bpf_probe_read_kernel((t)->raddr, 16, (args)->daddr_v6);             \
        } else {                                                                 \
            bpf_probe_read_kernel((t)->laddr, 4, (args)->saddr);                 \
            bpf_probe_read_kernel((t)->raddr, 4, (args)->daddr);                 \
        }                                                                        \
        tuple_unmap_v4(t);                                                       \
    } while (0)

#ifdef HOOK_KPROBE
// struct sock fields for kprobe alternatives: BTF offsets (-D) unless the
// headers match the kernel.
#ifndef OFF_SK_FAMILY
#include <net/sock.h>
#endif
#ifndef OFF_SK_FAMILY
#define OFF_SK_FAMILY offsetof(struct sock, __sk_common.skc_family)
#endif
#ifndef OFF_SK_STATE
#define OFF_SK_STATE offsetof(struct sock, __sk_common.skc_state)
#endif
#ifndef OFF_SK_NUM
#define OFF_SK_NUM offsetof(struct sock, __sk_common.skc_num)
#endif
#ifndef OFF_SK_DPORT
#define OFF_SK_DPORT offsetof(struct sock, __sk_common.skc_dport)
#endif
#ifndef OFF_SK_RCV_SADDR
#define OFF_SK_RCV_SADDR offsetof(struct sock, __sk_common.skc_rcv_saddr)
#endif
#ifndef OFF_SK_DADDR
#define OFF_SK_DADDR offsetof(struct sock, __sk_common.skc_daddr)
#endif
#ifndef OFF_SK_V6_RCV_SADDR
#define OFF_SK_V6_RCV_SADDR offsetof(struct sock, __sk_common.skc_v6_rcv_saddr)
#endif
#ifndef OFF_SK_V6_DADDR
#define OFF_SK_V6_DADDR offsetof(struct sock, __sk_common.skc_v6_daddr)
#endif

static __always_inline int bw_sk_state(const void *sk)
{
    u8 state = 0;
    bpf_probe_read_kernel(&state, sizeof(state), (const char *)sk + OFF_SK_STATE);
    return state;
}

static __always_inline void tuple_from_sk(struct tcp_tuple *t, const void *sk)
{
    const char *s = (const char *)sk;
    u16 dport = 0;
    bpf_probe_read_kernel(&t->family, sizeof(t->family), s + OFF_SK_FAMILY);
    bpf_probe_read_kernel(&t->lport, sizeof(t->lport), s + OFF_SK_NUM);
    bpf_probe_read_kernel(&dport, sizeof(dport), s + OFF_SK_DPORT);
    t->rport = bpf_ntohs(dport);
    if (t->family == BW_AF_INET6) {
        bpf_probe_read_kernel(t->laddr, 16, s + OFF_SK_V6_RCV_SADDR);
        bpf_probe_read_kernel(t->raddr, 16, s + OFF_SK_V6_DADDR);
    } else {
        bpf_probe_read_kernel(t->laddr, 4, s + OFF_SK_RCV_SADDR);
        bpf_probe_read_kernel(t->raddr, 4, s + OFF_SK_DADDR);
    }
    tuple_unmap_v4(t);
}
#endif

// --lport/--rport: Python fills all 8 slots (repeating a port) or none.
#ifndef PORT_SLOTS
#error "PORT_SLOTS must be passed by Python (tracers/tools/_tcp.py)"
#elif PORT_SLOTS != 8
#error "tcpcommon.h compares exactly 8 slots: LPORT_0..7, RPORT_0..7"
#endif
static __always_inline int lport_wanted(u16 p)
{
#ifdef LPORT_0
    return p == LPORT_0 || p == LPORT_1 || p == LPORT_2 || p == LPORT_3 ||
           p == LPORT_4 || p == LPORT_5 || p == LPORT_6 || p == LPORT_7;
#else
    return 1;
#endif
}

static __always_inline int rport_wanted(u16 p)
{
#ifdef RPORT_0
    return p == RPORT_0 || p == RPORT_1 || p == RPORT_2 || p == RPORT_3 ||
           p == RPORT_4 || p == RPORT_5 || p == RPORT_6 || p == RPORT_7;
#else
    return 1;
#endif
}

static __always_inline int tuple_filtered_out(const struct tcp_tuple *t)
{
#ifdef FILTER_FAMILY
    if (t->family != FILTER_FAMILY)
        return 1;
#endif
    return !lport_wanted(t->lport) || !rport_wanted(t->rport);
}

// -p/--comm/--cgroup against a recorded owner (the event itself may run in
// softirq, where the current task is whoever was interrupted).
static __always_inline int owner_filtered_out(u32 pid, const char *comm, u64 owner_cgroup)
{
    if (bpfwatch_owner_cgroup_filtered_out(owner_cgroup))
        return 1;
#ifdef FILTER_PID
    if (pid != FILTER_PID)
        return 1;
#endif
#ifdef FILTER_COMM_0
    u64 words[2] = {};
    __builtin_memcpy(words, comm, sizeof(words));
    if (words[0] != FILTER_COMM_0 || words[1] != FILTER_COMM_1)
        return 1;
#endif
    return 0;
}

// The socket state-change entry point of tcplife and tcpconnect, for both
// hooks: each file defines on_state(sk, oldstate, newstate, tuple). A macro
// so that it expands in the tracer's own file (BCC generates tracepoint
// structs and rewrites only there).
#ifdef HOOK_TRACEPOINT
#define BW_SET_STATE_ENTRY                                                   \
int on_set_state(struct tracepoint__sock__inet_sock_set_state *args)        \
{                                                                            \
    if (args->protocol != BW_IPPROTO_TCP)                                    \
        return 0;                                                            \
    struct tcp_tuple t = {};                                                 \
    TUPLE_FROM_TP(&t, args);                                                 \
    return on_state(args->skaddr, args->oldstate, args->newstate, &t);       \
}
#endif
#ifdef HOOK_KPROBE
// tcp_set_state(sk, state) runs before the change: the old state is in sk.
#define BW_SET_STATE_ENTRY                                                   \
int on_set_state(struct pt_regs *ctx)                                        \
{                                                                            \
    const void *sk = (const void *)PT_REGS_PARM1(ctx);                       \
    struct tcp_tuple t = {};                                                 \
    tuple_from_sk(&t, sk);                                                   \
    return on_state(sk, bw_sk_state(sk), (int)PT_REGS_PARM2(ctx), &t);       \
}
#endif

#endif
