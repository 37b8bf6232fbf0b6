"""Complete TCP handshakes with one final ACK sent twice at once, from two
CPUs: both reach the listener's request socket, the kernel creates two
children, and the loser dies SYN_RECV -> CLOSE (inet_ehash_nolisten).

Runs in namespace a: argv = dev, src_ip, dst_ip, dst_mac, port, count.
The source address is not a's own (b has a static neighbour for it), so
a's stack drops the SYN-ACKs instead of resetting them; an AF_PACKET
socket still sees them. Prints the source ports, one JSON list."""
import json
import os
import random
import socket
import struct
import sys
import time

dev, src, dst, dst_mac, port, count = sys.argv[1:7]
port, count = int(port), int(count)
ETH_P_IP = 0x0800


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def frame(sport, seq, ack, flags):
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, port, seq, ack, 5 << 4, flags, 65535, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", checksum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, s, d)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return bytes.fromhex(dst_mac.replace(":", "")) + my_mac + struct.pack("!H", ETH_P_IP) + ip + tcp


def packet_socket():
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    sock.bind((dev, ETH_P_IP))
    return sock


def sender(cpu, others):
    """A child pinned to one CPU: reads (deadline, frame), spins, sends."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        for _, pipe in others:  # EOF must reach each child when the parent goes
            pipe.close()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the caller reads stdout to EOF
        os.sched_setaffinity(0, {cpu})
        sock, pipe = packet_socket(), os.fdopen(r, "rb")
        while header := pipe.read(10):
            deadline, length = struct.unpack("!QH", header)
            data = pipe.read(length)
            while time.monotonic_ns() < deadline:
                pass
            sock.send(data)
        os._exit(0)
    os.close(r)
    return pid, os.fdopen(w, "wb", buffering=0)


listen = packet_socket()
listen.settimeout(5)
my_mac = listen.getsockname()[4]
senders = []
for cpu in sorted(os.sched_getaffinity(0))[:2]:
    senders.append(sender(cpu, senders))
sports = random.sample(range(20000, 60000), count)
for sport in sports:
    isn = random.getrandbits(32)
    listen.send(frame(sport, isn, 0, 0x02))  # SYN
    while True:
        data = listen.recv(2048)
        ihl = (data[14] & 0xf) * 4
        tcp = data[14 + ihl:]
        sp, dp, seq, ack = struct.unpack("!HHII", tcp[:12])
        if sp == port and dp == sport and tcp[13] & 0x12 == 0x12 and ack == (isn + 1) & 0xffffffff:
            break
    final = frame(sport, (isn + 1) & 0xffffffff, (seq + 1) & 0xffffffff, 0x10)
    deadline = time.monotonic_ns() + 2_000_000
    for _, pipe in senders:
        pipe.write(struct.pack("!QH", deadline, len(final)) + final)
    time.sleep(0.004)
for pid, pipe in senders:
    pipe.close()
    os.waitpid(pid, 0)
print(json.dumps(sports), flush=True)
