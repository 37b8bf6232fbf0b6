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
    u8 proto;     // L4 protocol (past IPv6 extension headers)
    u8 fragment;  // 1: a fragment after the first: no L4 header, no ports
};

// IPv6 extension headers walked to the upper-layer header: hop-by-hop,
// routing, fragment, AH, destination options. A fixed bound for the
// verifier; a longer chain reads as its next header's number.
#define BPFWATCH_IPV6_EXT_MAX 8

static __always_inline int bpfwatch_ipv6_ext(u8 nexthdr)
{
    return nexthdr == 0 || nexthdr == 43 || nexthdr == 44 || nexthdr == 51 || nexthdr == 60;
}

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
        if (bpf_ntohs(ip.frag_off) & 0x1fff) {
            p->fragment = 1;  // a later fragment: no L4 header
            return;
        }
        l4 += ip.ihl * 4;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, L2_LEN, &ip6, sizeof(ip6)))
            return;
        p->family = 10;
        __builtin_memcpy(p->src, &ip6.saddr, 16);
        __builtin_memcpy(p->dst, &ip6.daddr, 16);
        l4 += sizeof(ip6);
        u8 next = ip6.nexthdr;
#pragma unroll
        for (int i = 0; i < BPFWATCH_IPV6_EXT_MAX; i++) {
            if (!bpfwatch_ipv6_ext(next))
                break;
            u8 ext[4];  // next header, length; a fragment header's offset
            if (bpf_skb_load_bytes(skb, l4, ext, sizeof(ext))) {
                p->proto = next;
                return;
            }
            if (next == 44) {  // fragment: 8 bytes; offset in the top 13 bits
                if ((ext[2] << 8 | ext[3]) & 0xfff8) {
                    p->proto = ext[0];
                    p->fragment = 1;
                    return;
                }
                l4 += 8;
            } else if (next == 51) {  // AH: (length + 2) 4-byte words
                l4 += (ext[1] + 2) * 4;
            } else {  // (length + 1) 8-byte words
                l4 += (ext[1] + 1) * 8;
            }
            next = ext[0];
        }
        p->proto = next;
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
