// profile: sample on-CPU stacks at a fixed rate (perf_event), count per stack.
// The sample interrupts the task it counts, so helpers describe it.
#include <uapi/linux/bpf_perf_event.h>
#include "bpfwatch.h"

struct stack_key {
    u64 cgroup_id;
    u32 tgid;
    s32 user_stack;
    s32 kernel_stack;
    char comm[16];
    u32 pad;
};

BPF_HASH(samples, struct stack_key, u64, 65536);
BPF_STACK_TRACE(stacks, 16384);

int on_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
#ifndef INCLUDE_IDLE
    if ((u32)id == 0)
        return 0;
#endif
    if (bpfwatch_filtered_out())
        return 0;
    struct stack_key key = {.tgid = id >> 32, .cgroup_id = bpf_get_current_cgroup_id()};
    bpf_get_current_comm(key.comm, sizeof(key.comm));
#ifdef KERNEL_STACKS_ONLY
    key.user_stack = -1;
#else
    key.user_stack = stacks.get_stackid(&ctx->regs, BPF_F_USER_STACK);
#endif
#ifdef USER_STACKS_ONLY
    key.kernel_stack = -1;
#else
    key.kernel_stack = stacks.get_stackid(&ctx->regs, 0);
#endif
    u64 zero = 0;
    bpfwatch_add(samples.lookup_or_try_init(&key, &zero), 1);
    return 0;
}
