// runqlat: time from becoming runnable (woken, or preempted) to running.
// sched_switch fires in the context of prev (the task leaving the CPU), so
// helpers describe prev, never next. Filters and per-process keys need the
// tgid/comm of the task whose wait ended: that wait is parked in `pending`
// at switch-in and accounted at its next switch-out, when it is current.
#include "bpfwatch.h"
#include "sched.h"

#ifndef UNIT_NS  // ns per unit: 1000 (usecs) or 1000000 (-m)
#error "UNIT_NS must be passed by Python (tracers/tools/runqlat.py)"
#endif
// Tracepoint prev_state: bits 0..7 are sleeping states (S D T t X Z P I);
// a preempted task reports 0 or TASK_REPORT_MAX (0x100): still runnable.
#define TP_SLEEP_MASK 0xff

#if defined(FILTER_PID) || defined(FILTER_COMM_0) || defined(PER_PROCESS) || defined(PER_THREAD) || \
    defined(PER_CGROUP) || defined(FILTER_CGROUP)
#define DEFER 1
#endif

// Raw tracepoints read the state of prev too (OFF_TASK_PID: sched.h).
#if defined(HOOK_RAW_TRACEPOINT) && !defined(OFF_TASK_STATE)
#include <linux/sched.h>
#define OFF_TASK_STATE offsetof(struct task_struct, __state)
#endif

BPF_HASH(start, u32, u64, 65536);      // tid -> when it became runnable
BPF_PERCPU_ARRAY(dist, u64, 65);       // log2 slot -> count
BPF_PERCPU_ARRAY(dist_sum, u64, 1);    // total latency, UNIT_NS units
#ifdef DEFER
BPF_HASH(pending, u32, u64, 65536);    // tid -> latency not yet accounted
#endif
#if defined(PER_PROCESS) || defined(PER_THREAD)
BPF_HASH(dist_pid, struct pid_key, u64, 65536);
#endif
#ifdef PER_CGROUP
BPF_HASH(dist_cgroup, struct cgroup_slot_key, u64, 65536);
#endif

static __always_inline void account(u32 id, u64 delta_ns)
{
    u64 v = delta_ns / UNIT_NS;
    u32 slot = bpfwatch_log2_slot(v), first = 0;
    bpfwatch_hist_add(dist.lookup(&slot), dist_sum.lookup(&first), v);
#if defined(PER_PROCESS) || defined(PER_THREAD)
    u64 zero = 0;
    struct pid_key key = {.pid = id, .slot = slot};
    bpfwatch_add(dist_pid.lookup_or_try_init(&key, &zero), 1);
#endif
#ifdef PER_CGROUP  // DEFER: the task whose wait this was is current
    u64 none = 0;
    struct cgroup_slot_key ck = {.cgroup_id = bpf_get_current_cgroup_id(), .slot = slot};
    bpfwatch_add(dist_cgroup.lookup_or_try_init(&ck, &none), 1);
#endif
}

static __always_inline void enqueued(u32 tid, int keep_older)
{
    if (!tid)
        return;  // idle
    u64 now = bpf_ktime_get_ns();
    // A wakeup of a task already queued (preempted) keeps the older time.
    if (keep_older)
        start.insert(&tid, &now);  // fails when queued already: that is the point
    else
        bpfwatch_checked_update(start.update(&tid, &now));
}

static __always_inline void switched(u32 prev, int prev_runnable, u32 next)
{
    if (prev) {
#ifdef DEFER
        u64 *delta = pending.lookup(&prev);
        if (delta) {
            u64 d = *delta;
            pending.delete(&prev);
            if (!bpfwatch_filtered_out()) {
#ifdef PER_THREAD
                account(prev, d);
#else
                account(bpf_get_current_pid_tgid() >> 32, d);
#endif
            }
        }
#endif
        if (prev_runnable)
            enqueued(prev, 0);
        else
            start.delete(&prev);
    }
    if (!next)
        return;
    u64 *ts = start.lookup(&next);
    if (!ts)
        return;
    u64 delta = bpf_ktime_get_ns() - *ts;
    start.delete(&next);
#ifdef DEFER
    bpfwatch_checked_update(pending.update(&next, &delta));
#else
    account(0, delta);
#endif
}

#ifdef HOOK_TRACEPOINT
int on_sched_wakeup(struct tracepoint__sched__sched_wakeup *args)
{
    enqueued(args->pid, 1);
    return 0;
}

int on_sched_wakeup_new(struct tracepoint__sched__sched_wakeup_new *args)
{
    enqueued(args->pid, 1);
    return 0;
}

int on_sched_switch(struct tracepoint__sched__sched_switch *args)
{
    switched(args->prev_pid, !(args->prev_state & TP_SLEEP_MASK), args->next_pid);
    return 0;
}
#endif

#ifdef HOOK_RAW_TRACEPOINT
// sched_wakeup(_new)(struct task_struct *p)
int on_sched_wakeup(struct bpf_raw_tracepoint_args *ctx)
{
    enqueued(bw_task_tid((const void *)ctx->args[0]), 1);
    return 0;
}

// sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...)
int on_sched_switch(struct bpf_raw_tracepoint_args *ctx)
{
    unsigned int state = 0;
    bpf_probe_read_kernel(&state, sizeof(state), (char *)ctx->args[1] + OFF_TASK_STATE);
    int runnable = ctx->args[0] || state == 0;  // preempted, or TASK_RUNNING
    switched((u32)bpf_get_current_pid_tgid(), runnable, bw_task_tid((const void *)ctx->args[2]));
    return 0;
}
#endif
