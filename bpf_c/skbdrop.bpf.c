// skbdrop: packets the kernel drops (skb:kfree_skb), counted in the kernel
// per drop reason and protocol, and per kernel location with --location.
// Maps are never cleared: Python prints deltas, the exporter the totals.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"

#ifdef OFF_SKB_DEV
// Offsets from BTF: no kernel headers (they cost seconds of compile). The
// tracepoint's record names this enum; any complete 4-byte enum will do.
enum skb_drop_reason { BW_SKB_DROP_REASON };
#else
#include <linux/skbuff.h>
#include <linux/netdevice.h>
#include <net/net_namespace.h>
#endif

#ifdef FILTER_NETNS
// Only packets whose device is in one network namespace (by nsfs inode).
#ifndef OFF_SKB_DEV
#define OFF_SKB_DEV offsetof(struct sk_buff, dev)
#endif
#ifndef OFF_DEV_NET
#define OFF_DEV_NET offsetof(struct net_device, nd_net.net)
#endif
#ifndef OFF_NET_INUM
#define OFF_NET_INUM offsetof(struct net, ns.inum)
#endif

static __always_inline u32 netns_of(const void *skb)
{
    const char *dev = NULL, *net = NULL;
    u32 inum = 0;
    bpf_probe_read_kernel(&dev, sizeof(dev), (const char *)skb + OFF_SKB_DEV);
    if (!dev)
        return 0;
    bpf_probe_read_kernel(&net, sizeof(net), dev + OFF_DEV_NET);
    if (net)
        bpf_probe_read_kernel(&inum, sizeof(inum), net + OFF_NET_INUM);
    return inum;
}
#endif

struct drop_key {
    u32 reason;    // enum skb_drop_reason (values differ per kernel: names from BTF)
    u32 protocol;  // skb->protocol, host order (0x0800 IPv4)
};

struct loc_key {
    u32 reason;
    u32 protocol;
    u64 location;  // the kernel address that freed the packet
};

BPF_HASH(drops, struct drop_key, u64, 4096);
#ifdef BY_LOCATION
BPF_TABLE("lru_hash", struct loc_key, u64, drops_at, 10240);
#endif

int on_kfree_skb(struct tracepoint__skb__kfree_skb *args)
{
#ifdef FILTER_NETNS
    if (netns_of(args->skbaddr) != FILTER_NETNS)
        return 0;
#endif
    u64 zero = 0;
    struct drop_key k = {.reason = args->reason, .protocol = args->protocol};
    bpfwatch_add(drops.lookup_or_try_init(&k, &zero), 1);
#ifdef BY_LOCATION
    struct loc_key lk = {.reason = k.reason, .protocol = k.protocol,
                         .location = (u64)args->location};
    bpfwatch_add(drops_at.lookup_or_try_init(&lk, &zero), 1);
#endif
    return 0;
}
