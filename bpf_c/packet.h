// Packet parsing for tctraffic and sockfilter (skb programs: tc, socket
// filter). Reads through bpf_skb_load_bytes, which bounds-checks every read
// and works in socket filters, where direct packet access is not allowed.
#ifndef BPFWATCH_PACKET_H
#define BPFWATCH_PACKET_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

// Bytes before the IP header: 14 on Ethernet (and lo), 0 on raw-IP devices.
#ifndef L2_LEN
#error "L2_LEN must be passed by Python (tracers/tools/_net.py)"
#endif

struct bpfwatch_pkt {
    u32 src[4];   // network order, IPv4 in src[0]
    u32 dst[4];
    u16 family;   // AF_INET 2, AF_INET6 10, 0: not IP
    u16 sport;    // host order, 0 without a port
    u16 dport;
    u8 proto;     // L4 protocol
};

static __always_inline int bpfwatch_has_ports(u8 proto)
{
    return proto == 6 || proto == 17 || proto == 132 || proto == 136;  // TCP UDP SCTP UDP-Lite
}

static __always_inline void bpfwatch_parse(struct __sk_buff *skb, struct bpfwatch_pkt *p)
{
    u32 l4 = L2_LEN;
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, L2_LEN, &ip, sizeof(ip)))
            return;
        p->family = 2;
        p->proto = ip.protocol;
        p->src[0] = ip.saddr;
        p->dst[0] = ip.daddr;
        if (bpf_ntohs(ip.frag_off) & 0x1fff)
            return;  // a later fragment: no L4 header
        l4 += ip.ihl * 4;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, L2_LEN, &ip6, sizeof(ip6)))
            return;
        p->family = 10;
        p->proto = ip6.nexthdr;  // extension headers are not walked
        __builtin_memcpy(p->src, &ip6.saddr, 16);
        __builtin_memcpy(p->dst, &ip6.daddr, 16);
        l4 += sizeof(ip6);
    } else {
        return;
    }
    if (!bpfwatch_has_ports(p->proto))
        return;
    u16 ports[2];
    if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
        return;
    p->sport = bpf_ntohs(ports[0]);
    p->dport = bpf_ntohs(ports[1]);
}

// Address rules arrive as four native-order u32 words of network and mask.
#define BPFWATCH_ADDR_IN(a, n0, n1, n2, n3, m0, m1, m2, m3) \
    (((a)[0] & (m0)) == (n0) && ((a)[1] & (m1)) == (n1) && \
     ((a)[2] & (m2)) == (n2) && ((a)[3] & (m3)) == (n3))

#endif
