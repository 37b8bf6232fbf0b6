// Shared by the scheduler tracers (cpudist, offcputime, runqlat). Types,
// helpers and macros only: BCC generates tracepoint structs and rewrites map
// calls in the tracer's own file alone.
#ifndef BPFWATCH_SCHED_H
#define BPFWATCH_SCHED_H

// The key of the per-process (or per-thread) log2 histograms (dist_pid).
struct pid_key {
    u32 pid;
    u32 slot;
};

// The key of the per-container histograms (dist_cgroup): a cgroup v2 id.
struct cgroup_slot_key {
    u64 cgroup_id;
    u32 slot;
    u32 pad;
};

#ifdef HOOK_RAW_TRACEPOINT
// Raw tracepoints hand task_struct pointers: offsets from BTF (-D) unless
// the headers match the kernel (no OFF_ defines passed).
#ifndef OFF_TASK_PID
#include <linux/sched.h>
#define OFF_TASK_PID offsetof(struct task_struct, pid)
#endif

static __always_inline u32 bw_task_tid(const void *task)
{
    u32 pid = 0;
    bpf_probe_read_kernel(&pid, sizeof(pid), (const char *)task + OFF_TASK_PID);
    return pid;
}
#endif

// The sched_switch entry point of cpudist and offcputime, for both hooks:
// each file defines switched(ctx, prev_tid, next_tid). It fires in the
// context of prev (the task leaving the CPU).
#ifdef HOOK_TRACEPOINT
#define BW_SCHED_SWITCH_ENTRY                                                \
int on_sched_switch(struct tracepoint__sched__sched_switch *args)           \
{                                                                            \
    switched(args, args->prev_pid, args->next_pid);                          \
    return 0;                                                                \
}
#endif
#ifdef HOOK_RAW_TRACEPOINT
// sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...)
#define BW_SCHED_SWITCH_ENTRY                                                \
int on_sched_switch(struct bpf_raw_tracepoint_args *ctx)                     \
{                                                                            \
    switched(ctx, (u32)bpf_get_current_pid_tgid(),                           \
             bw_task_tid((const void *)ctx->args[2]));                       \
    return 0;                                                                \
}
#endif

#endif
