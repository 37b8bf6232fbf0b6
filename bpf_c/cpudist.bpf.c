// cpudist: how long tasks run per stint on a CPU (-O: how long they stay off).
// sched_switch fires in the context of prev, so the filters and the key's
// tgid come from helpers at switch-out; off-CPU stints carry the tgid they
// were stamped with to the switch-in.
#include "bpfwatch.h"

#ifndef UNIT_NS
#define UNIT_NS 1000  // usecs; -m passes 1000000
#endif

#ifdef HOOK_RAW_TRACEPOINT
#include <linux/sched.h>
#ifndef OFF_TASK_PID
#define OFF_TASK_PID offsetof(struct task_struct, pid)
#endif
#endif

struct stamp {
    u64 ts;
    u32 tgid;
    u32 pad;
};

struct pid_key {
    u32 pid;
    u32 slot;
};

BPF_HASH(start, u32, struct stamp, 65536);  // tid -> stint began
BPF_PERCPU_ARRAY(dist, u64, 65);
BPF_PERCPU_ARRAY(dist_sum, u64, 1);
#ifdef PER_PROCESS
BPF_HASH(dist_pid, struct pid_key, u64, 65536);
#endif

static __always_inline void account(u32 tgid, u64 delta_ns)
{
    u64 v = delta_ns / UNIT_NS;
    u32 slot = bpfwatch_log2_slot(v), zero = 0;
#ifdef PER_PROCESS
    struct pid_key key = {.pid = tgid, .slot = slot};
    u64 one = 1, *count = dist_pid.lookup(&key);
    if (count)
        __sync_fetch_and_add(count, 1);
    else if (dist_pid.update(&key, &one))
        bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
#endif
    u64 *c = dist.lookup(&slot);
    if (c)
        (*c)++;
    u64 *sum = dist_sum.lookup(&zero);
    if (sum)
        *sum += v;
}

static __always_inline void stamp(u32 tid, u32 tgid)
{
    struct stamp s = {.ts = bpf_ktime_get_ns(), .tgid = tgid};
    if (start.update(&tid, &s))
        bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
}

static __always_inline void switched(u32 prev, u32 next)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;  // prev's
    if (prev && !bpfwatch_filtered_out()) {
#ifdef OFFCPU
        stamp(prev, tgid);
#else
        struct stamp *s = start.lookup(&prev);
        if (s) {
            account(tgid, bpf_ktime_get_ns() - s->ts);
            start.delete(&prev);
        }
#endif
    }
    if (!next)
        return;
#ifdef OFFCPU
    struct stamp *s = start.lookup(&next);
    if (s) {
        account(s->tgid, bpf_ktime_get_ns() - s->ts);
        start.delete(&next);
    }
#else
    // Filters are checked at switch-out; a stamp costs one map update.
    stamp(next, 0);
#endif
}

#ifdef HOOK_TRACEPOINT
int on_sched_switch(struct tracepoint__sched__sched_switch *args)
{
    switched(args->prev_pid, args->next_pid);
    return 0;
}
#endif

#ifdef HOOK_RAW_TRACEPOINT
// sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...)
int on_sched_switch(struct bpf_raw_tracepoint_args *ctx)
{
    u32 next = 0;
    bpf_probe_read_kernel(&next, sizeof(next), (char *)ctx->args[2] + OFF_TASK_PID);
    switched((u32)bpf_get_current_pid_tgid(), next);
    return 0;
}
#endif
