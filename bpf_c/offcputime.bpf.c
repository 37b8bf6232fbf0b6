// offcputime: time spent off-CPU, summed per (process, user stack, kernel stack).
// sched_switch fires in the context of prev: its stacks are where it blocks,
// and helpers (filters, comm, stacks) describe it. The time is added when it
// is switched back in.
#include "bpfwatch.h"

#ifndef MIN_BLOCK_US
#define MIN_BLOCK_US 1
#endif
#ifndef MAX_BLOCK_US
#define MAX_BLOCK_US 0xffffffffffffffffULL
#endif

#ifdef HOOK_RAW_TRACEPOINT
#include <linux/sched.h>
#ifndef OFF_TASK_PID
#define OFF_TASK_PID offsetof(struct task_struct, pid)
#endif
#endif

struct stack_key {
    u32 tgid;
    s32 user_stack;
    s32 kernel_stack;
    char comm[16];
};

struct blocked {
    u64 ts;
    struct stack_key key;
};

BPF_HASH(start, u32, struct blocked, 65536);      // tid -> since when, where
BPF_HASH(totals, struct stack_key, u64, 65536);   // -> total off-CPU ns
BPF_STACK_TRACE(stacks, 16384);

// -u/-k: user or kernel threads only, by PF_KTHREAD in the current (prev)
// task's flags; the offset comes from BTF unless the headers match.
#if defined(USER_THREADS_ONLY) || defined(KERNEL_THREADS_ONLY)
#ifndef BPFWATCH_PF_KTHREAD
#error "BPFWATCH_PF_KTHREAD must be passed by Python (tracers/tools/_stacks.py)"
#endif
#ifndef OFF_TASK_FLAGS
#include <linux/sched.h>
#define OFF_TASK_FLAGS offsetof(struct task_struct, flags)
#endif
static __always_inline int thread_wanted(void)
{
    u32 flags = 0;
    bpf_probe_read_kernel(&flags, sizeof(flags), (char *)bpf_get_current_task() + OFF_TASK_FLAGS);
#ifdef USER_THREADS_ONLY
    return !(flags & BPFWATCH_PF_KTHREAD);
#else
    return !!(flags & BPFWATCH_PF_KTHREAD);
#endif
}
#else
static __always_inline int thread_wanted(void) { return 1; }
#endif

static __always_inline void switched(void *ctx, u32 prev, u32 next)
{
    if (prev && !bpfwatch_filtered_out() && thread_wanted()) {
        struct blocked b = {.ts = bpf_ktime_get_ns()};
        b.key.tgid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(b.key.comm, sizeof(b.key.comm));
#ifdef KERNEL_STACKS_ONLY
        b.key.user_stack = -1;
#else
        b.key.user_stack = stacks.get_stackid(ctx, BPF_F_USER_STACK);
#endif
#ifdef USER_STACKS_ONLY
        b.key.kernel_stack = -1;
#else
        b.key.kernel_stack = stacks.get_stackid(ctx, 0);
#endif
        if (start.update(&prev, &b))
            bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
    }
    if (!next)
        return;
    struct blocked *b = start.lookup(&next);
    if (!b)
        return;
    u64 ns = bpf_ktime_get_ns() - b->ts;
    struct stack_key key = b->key;
    start.delete(&next);
    if (ns < MIN_BLOCK_US * 1000ULL || ns / 1000 > MAX_BLOCK_US)
        return;
    u64 *total = totals.lookup(&key);
    if (total)
        __sync_fetch_and_add(total, ns);
    else if (totals.update(&key, &ns))
        bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
}

#ifdef HOOK_TRACEPOINT
int on_sched_switch(struct tracepoint__sched__sched_switch *args)
{
    switched(args, args->prev_pid, args->next_pid);
    return 0;
}
#endif

#ifdef HOOK_RAW_TRACEPOINT
// sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...)
int on_sched_switch(struct bpf_raw_tracepoint_args *ctx)
{
    u32 next = 0;
    bpf_probe_read_kernel(&next, sizeof(next), (char *)ctx->args[2] + OFF_TASK_PID);
    switched(ctx, (u32)bpf_get_current_pid_tgid(), next);
    return 0;
}
#endif
