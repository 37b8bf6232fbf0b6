// offcputime: time spent off-CPU, summed per (process, user stack, kernel stack).
// sched_switch fires in the context of prev: its stacks are where it blocks,
// and helpers (filters, comm, stacks) describe it. The time is added when it
// is switched back in.
#include "bpfwatch.h"
#include "sched.h"

#ifndef MIN_BLOCK_US  // MAX_BLOCK_US: only with -M
#error "MIN_BLOCK_US must be passed by Python (tracers/tools/offcputime.py)"
#endif

struct stack_key {
    u64 cgroup_id;
    u32 tgid;
    s32 user_stack;
    s32 kernel_stack;
    char comm[16];
    u32 pad;
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
        b.key.cgroup_id = bpf_get_current_cgroup_id();
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
        bpfwatch_checked_update(start.update(&prev, &b));
    }
    if (!next)
        return;
    struct blocked *b = start.lookup(&next);
    if (!b)
        return;
    u64 ns = bpf_ktime_get_ns() - b->ts;
    struct stack_key key = b->key;
    start.delete(&next);
    if (ns < MIN_BLOCK_US * 1000ULL)
        return;
#ifdef MAX_BLOCK_US
    if (ns / 1000 > MAX_BLOCK_US)
        return;
#endif
    u64 zero = 0;
    bpfwatch_add(totals.lookup_or_try_init(&key, &zero), ns);
}

BW_SCHED_SWITCH_ENTRY
