// Shared by every bpfwatch program, prepended to it (BCC rewrites map calls
// only in the main file, and never inside a macro: helpers take what a map
// call returned, not the map). Settings arrive as -D integers.
#ifndef BPFWATCH_H
#define BPFWATCH_H

// Self-telemetry: tracers/runtime/stats.py reads it and passes its indexes.
#if !defined(BPFWATCH_STATS) || !defined(BPFWATCH_STAT_EVENTS_DROPPED) || \
    !defined(BPFWATCH_STAT_MAP_UPDATE_FAILURES)
#error "BPFWATCH_STAT_* must be passed by Python (tracers/runtime/stats.py)"
#endif
BPF_PERCPU_ARRAY(bpfwatch_stats, u64, BPFWATCH_STATS);

static __always_inline void bpfwatch_count(int index)
{
    u64 *value = bpfwatch_stats.lookup(&index);
    if (value)
        (*value)++;
}

// --cgroup/--container: the cgroup v2 id is FILTER_CGROUP; Python puts the
// directory in slot 0 after load. Until then the check fails: nothing passes.
#ifdef FILTER_CGROUP
BPF_CGROUP_ARRAY(bpfwatch_cgroup_filter, 1);
#endif

static __always_inline int bpfwatch_cgroup_filtered_out(void)
{
#ifdef FILTER_CGROUP
    return bpfwatch_cgroup_filter.check_current_task(0) != 1;  // 1: in it or below
#else
    return 0;
#endif
}

// The current task's cgroup v2 id for a record kept until an event that may
// fire in softirq (an owner, an issuer), or 0 when --cgroup excludes the
// task: cgroup ids start at 1, so 0 carries the verdict to that event.
static __always_inline u64 bpfwatch_owner_cgroup(void)
{
    return bpfwatch_cgroup_filtered_out() ? 0 : bpf_get_current_cgroup_id();
}

static __always_inline int bpfwatch_owner_cgroup_filtered_out(u64 owner_cgroup)
{
#ifdef FILTER_CGROUP
    return owner_cgroup == 0;
#else
    return 0;
#endif
}

// Metric maps carry the task's cgroup id in their key under the exporter's
// --per-container (-DCGROUP_LABELS), else 0: one series, as without it.
static __always_inline u64 bpfwatch_label_cgroup(void)
{
#ifdef CGROUP_LABELS
    return bpf_get_current_cgroup_id();
#else
    return 0;
#endif
}

// -p PID and --comm NAME filters. The comm arrives as two little-endian
// u64 words (FILTER_COMM_0/1), never as text pasted into C.
static __always_inline int bpfwatch_filtered_out(void)
{
    if (bpfwatch_cgroup_filtered_out())
        return 1;
#ifdef FILTER_PID
    if ((bpf_get_current_pid_tgid() >> 32) != FILTER_PID)
        return 1;
#endif
#ifdef FILTER_COMM_0
    u64 comm[2] = {};
    bpf_get_current_comm(&comm, sizeof(comm));
    if (comm[0] != FILTER_COMM_0 || comm[1] != FILTER_COMM_1)
        return 1;
#endif
    return 0;
}

// A full map fails updates silently: these count it.
// checked_init takes map.lookup_or_try_init(&key, &zero) (lookup, else
// insert, else lookup: a racing CPU's insert is kept) and returns it.
static __always_inline void *bpfwatch_checked_init(void *value)
{
    if (!value)
        bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
    return value;
}

static __always_inline void bpfwatch_checked_update(int err)
{
    if (err)
        bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
}

// Add n to a u64 counter from map.lookup_or_try_init(&key, &zero).
static __always_inline void bpfwatch_add(u64 *counter, u64 n)
{
    if (bpfwatch_checked_init(counter))
        __sync_fetch_and_add(counter, n);
}

// After len = bpf_probe_read_{user,kernel}_str(dst, size, src): whether src
// went on past the size - 1 bytes kept (a string of exactly size - 1 bytes
// fills dst too, so the next byte decides). Text is never cut without a
// mark: if that byte is unreadable now (unmapped since the copy), we cannot
// know: say cut.
static __always_inline int bpfwatch_str_cut(int len, u32 size, const char *src, int user)
{
    char next = 0;
    if (len != size)
        return 0;
    long err = user ? bpf_probe_read_user(&next, 1, src + size - 1)
                    : bpf_probe_read_kernel(&next, 1, src + size - 1);
    return err || next != 0;
}
#define bpfwatch_user_str_cut(len, size, src) bpfwatch_str_cut(len, size, src, 1)
#define bpfwatch_kernel_str_cut(len, size, src) bpfwatch_str_cut(len, size, src, 0)

// Power-of-two bucket: 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...
// (slot k > 0 holds [2^(k-1), 2^k)); tracers/output/text.py reads the same way.
static __always_inline u32 bpfwatch_log2_slot(u64 v)
{
    return v ? bpf_log2l(v) : 0;  // bcc's bpf_log2l(v) = floor(log2 v) + 1
}

// One value into a log2 histogram in per-CPU arrays (65 slots, and a sum):
// u32 slot = bpfwatch_log2_slot(v), first = 0;
// bpfwatch_hist_add(dist.lookup(&slot), dist_sum.lookup(&first), v);
static __always_inline void bpfwatch_hist_add(u64 *slot_count, u64 *sum, u64 v)
{
    if (slot_count)
        (*slot_count)++;
    if (sum)
        *sum += v;
}

#endif
