// cpudist: how long tasks run per stint on a CPU (-O: how long they stay off).
// sched_switch fires in the context of prev, so the filters and the key's
// tgid come from helpers at switch-out; off-CPU stints carry the tgid they
// were stamped with to the switch-in.
#include "bpfwatch.h"
#include "sched.h"

#ifndef UNIT_NS  // ns per unit: 1000 (usecs) or 1000000 (-m)
#error "UNIT_NS must be passed by Python (tracers/tools/cpudist.py)"
#endif

struct stamp {
    u64 ts;
    u64 cgroup_id;  // -O --per-container: prev's, stamped at switch-out
    u32 tgid;
    u32 pad;
};

BPF_HASH(start, u32, struct stamp, 65536);  // tid -> stint began
BPF_PERCPU_ARRAY(dist, u64, 65);
BPF_PERCPU_ARRAY(dist_sum, u64, 1);
#ifdef PER_PROCESS
BPF_HASH(dist_pid, struct pid_key, u64, 65536);
#endif
#ifdef PER_CGROUP
BPF_HASH(dist_cgroup, struct cgroup_slot_key, u64, 65536);
#endif

// prev's cgroup (sched_switch runs in prev's context), only when asked.
static __always_inline u64 prev_cgroup(void)
{
#ifdef PER_CGROUP
    return bpf_get_current_cgroup_id();
#else
    return 0;
#endif
}

static __always_inline void account(u32 tgid, u64 cgroup, u64 delta_ns)
{
    u64 v = delta_ns / UNIT_NS;
    u32 slot = bpfwatch_log2_slot(v), first = 0;
    bpfwatch_hist_add(dist.lookup(&slot), dist_sum.lookup(&first), v);
#ifdef PER_PROCESS
    u64 zero = 0;
    struct pid_key key = {.pid = tgid, .slot = slot};
    bpfwatch_add(dist_pid.lookup_or_try_init(&key, &zero), 1);
#endif
#ifdef PER_CGROUP
    u64 none = 0;
    struct cgroup_slot_key ck = {.cgroup_id = cgroup, .slot = slot};
    bpfwatch_add(dist_cgroup.lookup_or_try_init(&ck, &none), 1);
#endif
}

static __always_inline void stamp(u32 tid, u32 tgid)
{
    struct stamp s = {.ts = bpf_ktime_get_ns(), .cgroup_id = tgid ? prev_cgroup() : 0, .tgid = tgid};
    bpfwatch_checked_update(start.update(&tid, &s));
}

static __always_inline void switched(void *ctx, u32 prev, u32 next)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;  // prev's
    if (prev && !bpfwatch_filtered_out()) {
#ifdef OFFCPU
        stamp(prev, tgid);
#else
        struct stamp *s = start.lookup(&prev);
        if (s) {
            account(tgid, prev_cgroup(), bpf_ktime_get_ns() - s->ts);
            start.delete(&prev);
        }
#endif
    }
    if (!next)
        return;
#ifdef OFFCPU
    struct stamp *s = start.lookup(&next);
    if (s) {
        account(s->tgid, s->cgroup_id, bpf_ktime_get_ns() - s->ts);
        start.delete(&next);
    }
#else
    // Filters are checked at switch-out; a stamp costs one map update.
    stamp(next, 0);
#endif
}

BW_SCHED_SWITCH_ENTRY
