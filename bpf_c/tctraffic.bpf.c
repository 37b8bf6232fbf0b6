// tctraffic: tc programs on ingress and egress, attached as tcx links or
// as clsact direct-action filters (the same code: TC_ACT_UNSPEC is TCX_NEXT,
// TC_ACT_SHOT is TCX_DROP). Counts passed packets and bytes per direction,
// protocol and destination port; drops what a --block rule matches and
// counts it per rule; sets skb->priority on egress for --priority rules
// (HTB class ids). Passing packets return TC_ACT_UNSPEC / TCX_NEXT, so
// programs and filters after ours still run.
//
// No count is ever lost: the flow map is a plain (non-LRU) hash, so nothing
// is evicted; a packet whose flow finds no room once the map is full is
// counted in traffic_overflow instead. Flows + overflow = every packet.
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include "bpfwatch.h"
#include "packet.h"

#ifndef MAX_FLOWS
#error "MAX_FLOWS (flow map size) must come from tracers/tools/tctraffic.py"
#endif
#ifndef BLOCK_CIDRS
#define BLOCK_CIDRS 0
#endif
#ifndef BLOCK_PORTS
#define BLOCK_PORTS 0
#endif
#ifndef PRIO_RULES
#define PRIO_RULES 0
#endif
#define REASON_CIDR 1
#define REASON_PORT 2

struct traffic_key {
    u16 family;
    u16 port;      // destination port, host order
    u8 direction;  // 0 ingress, 1 egress
    u8 proto;
    u16 pad;
};

struct counts {
    u64 packets;
    u64 bytes;
};

struct drop_key {
    u16 rule;      // REASON_CIDR: --block slot; REASON_PORT: the port
    u8 direction;
    u8 reason;
};

BPF_PERCPU_HASH(traffic, struct traffic_key, struct counts, MAX_FLOWS);
BPF_PERCPU_ARRAY(traffic_overflow, struct counts, 2);  // by direction
BPF_HASH(drops, struct drop_key, struct counts, 64);
BPF_ARRAY(prioritized, struct counts, 8);

static __always_inline void add(struct counts *c, u32 len)
{
    __sync_fetch_and_add(&c->packets, 1);
    __sync_fetch_and_add(&c->bytes, len);
}

#define CIDR(i) \
    if (BLOCK_##i##_FAMILY == p->family && BPFWATCH_ADDR_IN(a, \
            BLOCK_##i##_NET0, BLOCK_##i##_NET1, BLOCK_##i##_NET2, BLOCK_##i##_NET3, \
            BLOCK_##i##_MASK0, BLOCK_##i##_MASK1, BLOCK_##i##_MASK2, BLOCK_##i##_MASK3)) \
        return i + 1;

// Which --block CIDR (slot + 1) holds the remote address, 0 if none.
static __always_inline int cidr_rule(struct bpfwatch_pkt *p, u32 *a)
{
#if BLOCK_CIDRS > 0
    CIDR(0)
#endif
#if BLOCK_CIDRS > 1
    CIDR(1)
#endif
#if BLOCK_CIDRS > 2
    CIDR(2)
#endif
#if BLOCK_CIDRS > 3
    CIDR(3)
#endif
#if BLOCK_CIDRS > 4
    CIDR(4)
#endif
#if BLOCK_CIDRS > 5
    CIDR(5)
#endif
#if BLOCK_CIDRS > 6
    CIDR(6)
#endif
#if BLOCK_CIDRS > 7
    CIDR(7)
#endif
    return 0;
}

#define PORT_IS(port, p) ((port) && ((p)->sport == (port) || (p)->dport == (port)))
#define PORT(i) if (PORT_IS(BLOCK_PORT_##i, p)) return BLOCK_PORT_##i;

// The --block-port that the packet uses (either side), 0 if none.
static __always_inline int port_rule(struct bpfwatch_pkt *p)
{
#if BLOCK_PORTS > 0
    PORT(0)
#endif
#if BLOCK_PORTS > 1
    PORT(1)
#endif
#if BLOCK_PORTS > 2
    PORT(2)
#endif
#if BLOCK_PORTS > 3
    PORT(3)
#endif
#if BLOCK_PORTS > 4
    PORT(4)
#endif
#if BLOCK_PORTS > 5
    PORT(5)
#endif
#if BLOCK_PORTS > 6
    PORT(6)
#endif
#if BLOCK_PORTS > 7
    PORT(7)
#endif
    return 0;
}

#define PRIO(i) if (PORT_IS(PRIO_PORT_##i, p)) { skb->priority = PRIO_CLASS_##i; return i; }

// Set skb->priority from the first matching --priority rule; its slot or -1.
static __always_inline int set_priority(struct __sk_buff *skb, struct bpfwatch_pkt *p)
{
#if PRIO_RULES > 0
    PRIO(0)
#endif
#if PRIO_RULES > 1
    PRIO(1)
#endif
#if PRIO_RULES > 2
    PRIO(2)
#endif
#if PRIO_RULES > 3
    PRIO(3)
#endif
    return -1;
}

static __always_inline int drop(u8 direction, u8 reason, u16 rule, u32 len)
{
    struct drop_key key = {.rule = rule, .direction = direction, .reason = reason};
    struct counts zero = {}, *c = bpfwatch_checked_init(drops.lookup_or_try_init(&key, &zero));
    if (c)
        add(c, len);
    return TC_ACT_SHOT;
}

static __always_inline int handle(struct __sk_buff *skb, u8 direction)
{
    struct bpfwatch_pkt p = {};
    bpfwatch_parse(skb, &p);
    u32 len = skb->len;
    int rule = cidr_rule(&p, direction ? p.dst : p.src);
    if (rule)
        return drop(direction, REASON_CIDR, rule - 1, len);
    rule = port_rule(&p);
    if (rule)
        return drop(direction, REASON_PORT, rule, len);
    if (direction) {
        int slot = set_priority(skb, &p);
        struct counts *c = prioritized.lookup(&slot);
        if (c)
            add(c, len);
    }
    struct traffic_key key = {.family = p.family, .port = p.dport,
                              .direction = direction, .proto = p.proto};
    struct counts *c = traffic.lookup(&key);
    if (!c) {
        struct counts zero = {};
        traffic.insert(&key, &zero);  // fails if another CPU won (then found) or if full
        c = traffic.lookup(&key);
    }
    if (!c) {
        u32 slot = direction;
        c = traffic_overflow.lookup(&slot);
    }
    if (c)
        add(c, len);
    return TC_ACT_UNSPEC;
}

int on_ingress(struct __sk_buff *skb)
{
    return handle(skb, 0);
}

int on_egress(struct __sk_buff *skb)
{
    return handle(skb, 1);
}
