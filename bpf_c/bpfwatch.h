// Shared by every bpfwatch program. Settings arrive as -D integers.
#ifndef BPFWATCH_H
#define BPFWATCH_H

// Self-telemetry, read by tracers/runtime/stats.py: keep indexes in step.
#define BPFWATCH_STAT_EVENTS_DROPPED 0
#define BPFWATCH_STAT_MAP_UPDATE_FAILURES 1
BPF_PERCPU_ARRAY(bpfwatch_stats, u64, 2);

static __always_inline void bpfwatch_count(int index)
{
    u64 *value = bpfwatch_stats.lookup(&index);
    if (value)
        (*value)++;
}

// -p PID and --comm NAME filters. The comm arrives as two little-endian
// u64 words (FILTER_COMM_0/1), never as text pasted into C.
static __always_inline int bpfwatch_filtered_out(void)
{
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

// Power-of-two bucket: 0 -> 0, 1 -> 1, 2..3 -> 2, 4..7 -> 3, ...
// (slot k > 0 holds [2^(k-1), 2^k)); tracers/fmt.py reads the same way.
static __always_inline u32 bpfwatch_log2_slot(u64 v)
{
    return v ? bpf_log2l(v) : 0;  // bcc's bpf_log2l(v) = floor(log2 v) + 1
}

#endif
