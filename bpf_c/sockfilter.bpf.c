// sockfilter: an eBPF socket filter (SO_ATTACH_BPF) on an AF_PACKET socket,
// the classic tcpdump mechanism. Returning the length keeps a packet for
// this socket, 0 drops it (for this socket only; traffic is untouched).
// All given criteria must hold; a list (--port, --host) matches any entry.
#include <uapi/linux/bpf.h>
#include "bpfwatch.h"
#include "packet.h"

#if !defined(FILTER_PORTS) || !defined(FILTER_HOSTS)
#error "FILTER_PORTS and FILTER_HOSTS must be passed by Python (tracers/tools/sockfilter.py)"
#elif FILTER_PORTS > 4 || FILTER_HOSTS > 4
#error "sockfilter.bpf.c has 4 --port and 4 --host slots"
#endif
#ifndef LOOPBACK_IFINDEX  // lo in the tracer's network namespace
#error "LOOPBACK_IFINDEX must be passed by Python (tracers/tools/sockfilter.py)"
#endif
#define BW_PACKET_OUTGOING 4  // uapi/linux/if_packet.h

struct match_key {
    u16 family;
    u8 proto;
    u8 pad;
};

struct counts {
    u64 packets;
    u64 bytes;
};

BPF_HASH(matches, struct match_key, struct counts, 1024);

#define PORT(i) if (FILTER_PORT_##i == p->sport || FILTER_PORT_##i == p->dport) return 1;

static __always_inline int port_ok(struct bpfwatch_pkt *p)
{
#if FILTER_PORTS == 0
    return 1;
#else
    if (!p->dport && !p->sport)
        return 0;
    PORT(0)
#if FILTER_PORTS > 1
    PORT(1)
#endif
#if FILTER_PORTS > 2
    PORT(2)
#endif
#if FILTER_PORTS > 3
    PORT(3)
#endif
    return 0;
#endif
}

#define HOST_IN(i, a) (HOST_##i##_FAMILY == p->family && BPFWATCH_ADDR_IN(a, \
    HOST_##i##_NET0, HOST_##i##_NET1, HOST_##i##_NET2, HOST_##i##_NET3, \
    HOST_##i##_MASK0, HOST_##i##_MASK1, HOST_##i##_MASK2, HOST_##i##_MASK3))
#define HOST(i) if (HOST_IN(i, p->src) || HOST_IN(i, p->dst)) return 1;

static __always_inline int host_ok(struct bpfwatch_pkt *p)
{
#if FILTER_HOSTS == 0
    return 1;
#else
    HOST(0)
#if FILTER_HOSTS > 1
    HOST(1)
#endif
#if FILTER_HOSTS > 2
    HOST(2)
#endif
#if FILTER_HOSTS > 3
    HOST(3)
#endif
    return 0;
#endif
}

int on_packet(struct __sk_buff *skb)
{
    // A packet socket sees loopback traffic twice, leaving and arriving:
    // keep the arriving copy, as libpcap does.
    if (skb->pkt_type == BW_PACKET_OUTGOING && skb->ifindex == LOOPBACK_IFINDEX)
        return 0;
    struct bpfwatch_pkt p = {};
    bpfwatch_parse(skb, &p);
#ifdef FILTER_PROTO
    if (!p.family || p.proto != FILTER_PROTO)
        return 0;
#endif
    if (!port_ok(&p) || !host_ok(&p))
        return 0;
    struct match_key key = {.family = p.family, .proto = p.proto};
    struct counts zero = {}, *c = bpfwatch_checked_init(matches.lookup_or_try_init(&key, &zero));
    if (c) {
        __sync_fetch_and_add(&c->packets, 1);
        __sync_fetch_and_add(&c->bytes, skb->len);
    }
#ifdef COUNT_ONLY
    return 0;  // counted in the kernel; nothing to copy to user space
#else
    return skb->len;
#endif
}
