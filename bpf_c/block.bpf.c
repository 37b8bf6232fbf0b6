// biolatency / biosnoop: block I/O timed from insert or issue to completion.
// Default: a log2 latency histogram (biolatency). -DBIOSNOOP: one event per
// I/O on the ring buffer. The issuer's pid/comm are taken at insert (or at
// issue when there was no insert), before a kworker may take over.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"

#define FLUSH_SECTOR 0xffffffffffffffffULL

// Tracepoints: (dev, sector). Kprobes: the struct request pointer.
struct start_key {
    u32 dev;
    u32 pad;
    u64 sector;
};

struct start_val {
    u64 ts_insert;
    u64 ts_issue;
    u64 cgroup_id;  // bpfwatch_owner_cgroup() of the issuer
    u32 pid;
    u32 bytes;
    u32 dev;
    u32 pad;
    char comm[16];
    char rwbs[8];
};

BPF_TABLE("lru_hash", struct start_key, struct start_val, start, 16384);

#ifdef BIOSNOOP
struct bio_event {
    u64 ts;
    u64 sector;
    u64 latency_ns;
    u64 queue_ns;
    u64 cgroup_id;
    u32 dev;
    u32 pid;
    u32 bytes;
    s32 error;
    char comm[16];
    char rwbs[8];
};
BPF_RINGBUF_OUTPUT(events, 128);  // pages: 512 KiB
#else
struct hist_key {
    u64 cgroup_id;  // the issuer's, 0 unless PER_CGROUP
    u32 dev;   // 0 unless PER_DISK
    u32 slot;
    char rwbs[8];  // empty unless PER_FLAGS
};
BPF_HASH(dist, struct hist_key, u64, 4096);
BPF_HASH(dist_sum, struct hist_key, u64, 256);  // slot 0: the histogram's _sum
#endif

// -p/--comm apply to the issuer recorded at insert/issue, not to whoever
// completes the I/O (usually an interrupt or a kworker).
static __always_inline int issuer_filtered_out(struct start_val *v)
{
    if (bpfwatch_owner_cgroup_filtered_out(v->cgroup_id))
        return 1;
#ifdef FILTER_PID
    if (v->pid != FILTER_PID)
        return 1;
#endif
#ifdef FILTER_COMM_0
    u64 comm[2] = {};
    __builtin_memcpy(comm, v->comm, sizeof(comm));
    if (comm[0] != FILTER_COMM_0 || comm[1] != FILTER_COMM_1)
        return 1;
#endif
    return 0;
}

static __always_inline void fill_issuer(struct start_val *v)
{
    v->pid = bpf_get_current_pid_tgid() >> 32;
    v->cgroup_id = bpfwatch_owner_cgroup();
    bpf_get_current_comm(v->comm, sizeof(v->comm));
}

static __always_inline int insert_common(struct start_key *key)
{
    struct start_val v = {.ts_insert = bpf_ktime_get_ns()};
    fill_issuer(&v);
    bpfwatch_checked_update(start.update(key, &v));
    return 0;
}

static __always_inline int issue_common(struct start_key *key, u32 dev, u32 bytes, const char *rwbs)
{
    u64 now = bpf_ktime_get_ns();
    struct start_val *old = start.lookup(key);
    struct start_val v = {};
    if (old) {
        v = *old;
    } else {
        fill_issuer(&v);
        v.ts_insert = now;
    }
    v.ts_issue = now;
    v.dev = dev;
    v.bytes = bytes;
    bpf_probe_read_kernel(v.rwbs, sizeof(v.rwbs), rwbs);
    v.rwbs[7] = 0;
    bpfwatch_checked_update(start.update(key, &v));
    return 0;
}

static __always_inline int complete_common(struct start_key *key, u64 sector, s32 error)
{
    struct start_val *v = start.lookup(key);
    if (!v)
        return 0;  // issued before we started, or a flush we cannot pair
    u64 now = bpf_ktime_get_ns();
    if (issuer_filtered_out(v) || !v->ts_issue) {
        start.delete(key);
        return 0;
    }
#ifdef QUEUED
    u64 began = v->ts_insert;
#else
    u64 began = v->ts_issue;
#endif
#ifdef BIOSNOOP
    struct bio_event e = {.ts = now, .sector = sector, .latency_ns = now - began,
                          .queue_ns = v->ts_issue - v->ts_insert, .cgroup_id = v->cgroup_id,
                          .dev = v->dev,
                          .pid = v->pid, .bytes = v->bytes, .error = error};
    __builtin_memcpy(e.comm, v->comm, sizeof(e.comm));
    __builtin_memcpy(e.rwbs, v->rwbs, sizeof(e.rwbs));
    if (events.ringbuf_output(&e, sizeof(e), 0))
        bpfwatch_count(BPFWATCH_STAT_EVENTS_DROPPED);
#else
    u64 delta = now - began;
#ifdef MILLISECONDS
    delta /= 1000000;
#else
    delta /= 1000;
#endif
    struct hist_key hk = {.slot = bpfwatch_log2_slot(delta)};
#ifdef PER_DISK
    hk.dev = v->dev;
#endif
#ifdef PER_FLAGS
    __builtin_memcpy(hk.rwbs, v->rwbs, sizeof(hk.rwbs));
#endif
#ifdef PER_CGROUP
    hk.cgroup_id = v->cgroup_id;
#endif
    u64 zero = 0;
    bpfwatch_add(dist.lookup_or_try_init(&hk, &zero), 1);
    hk.slot = 0;  // the sum's key: the same labels
    bpfwatch_add(dist_sum.lookup_or_try_init(&hk, &zero), delta);
#endif
    start.delete(key);
    return 0;
}

#ifdef HOOK_TRACEPOINT
// A flush has no sector: issue says 0, completion says -1. Give both one key;
// the empty write that asked for the flush also completes, with no issue.
static __always_inline u64 key_sector(u64 sector, u32 nr_sector)
{
    return nr_sector ? sector : FLUSH_SECTOR;
}

int on_insert(struct tracepoint__block__block_rq_insert *args)
{
#ifdef DISK_DEV
    if (args->dev != DISK_DEV)
        return 0;
#endif
    struct start_key key = {.dev = args->dev, .sector = key_sector(args->sector, args->nr_sector)};
    return insert_common(&key);
}

int on_issue(struct tracepoint__block__block_rq_issue *args)
{
#ifdef DISK_DEV
    if (args->dev != DISK_DEV)
        return 0;
#endif
    struct start_key key = {.dev = args->dev, .sector = key_sector(args->sector, args->nr_sector)};
    return issue_common(&key, args->dev, args->bytes, args->rwbs);
}

int on_complete(struct tracepoint__block__block_rq_complete *args)
{
#ifdef DISK_DEV
    if (args->dev != DISK_DEV)
        return 0;
#endif
    char op = 0;
    bpf_probe_read_kernel(&op, 1, args->rwbs);
    if (!args->nr_sector && op != 'F')
        return 0;
    struct start_key key = {.dev = args->dev, .sector = key_sector(args->sector, args->nr_sector)};
    return complete_common(&key, args->nr_sector ? args->sector : 0, args->error);
}
#endif

#ifdef HOOK_KPROBE
// struct request offsets: from kernel BTF (-D) unless headers match.
#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#ifndef OFF_RQ_Q
#define OFF_RQ_Q offsetof(struct request, q)
#define OFF_RQ_CMD_FLAGS offsetof(struct request, cmd_flags)
#define OFF_RQ_DATA_LEN offsetof(struct request, __data_len)
#define OFF_RQ_SECTOR offsetof(struct request, __sector)
#define OFF_Q_DISK offsetof(struct request_queue, disk)
#define OFF_DISK_MAJOR offsetof(struct gendisk, major)
#define OFF_DISK_FIRST_MINOR offsetof(struct gendisk, first_minor)
#endif

static __always_inline u32 rq_dev(void *rq)
{
    void *q = NULL, *disk = NULL;
    int major = 0, minor = 0;
    bpf_probe_read_kernel(&q, sizeof(q), rq + OFF_RQ_Q);
    bpf_probe_read_kernel(&disk, sizeof(disk), q + OFF_Q_DISK);
    if (!disk)
        return 0;
    bpf_probe_read_kernel(&major, sizeof(major), disk + OFF_DISK_MAJOR);
    bpf_probe_read_kernel(&minor, sizeof(minor), disk + OFF_DISK_FIRST_MINOR);
    return ((u32)major << 20) | (u32)minor;
}

int on_insert(struct pt_regs *ctx, void *rq)
{
    struct start_key key = {.sector = (u64)rq};
#ifdef DISK_DEV
    if (rq_dev(rq) != DISK_DEV)
        return 0;
#endif
    return insert_common(&key);
}

int on_issue(struct pt_regs *ctx, void *rq)
{
    struct start_key key = {.sector = (u64)rq};
    u32 dev = rq_dev(rq), bytes = 0, flags = 0;
#ifdef DISK_DEV
    if (dev != DISK_DEV)
        return 0;
#endif
    bpf_probe_read_kernel(&bytes, sizeof(bytes), rq + OFF_RQ_DATA_LEN);
    bpf_probe_read_kernel(&flags, sizeof(flags), rq + OFF_RQ_CMD_FLAGS);
    // Only the operation: flag bit positions move between kernels.
    u8 op = flags & 0xff;
    char rwbs[8] = {op == 0 ? 'R' : op == 1 ? 'W' : op == 2 ? 'F' : op == 3 ? 'D' : 'N'};
    return issue_common(&key, dev, bytes, rwbs);
}

int on_complete(struct pt_regs *ctx, void *rq, u8 status)
{
    s32 error = status ? -5 : 0;  // blk_status_t, not an errno: report EIO
    struct start_key key = {.sector = (u64)rq};
    u64 sector = 0;
    bpf_probe_read_kernel(&sector, sizeof(sector), rq + OFF_RQ_SECTOR);
    return complete_common(&key, sector, error);
}
#endif
