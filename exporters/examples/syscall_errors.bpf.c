// Failed syscalls, counted by syscall number and errno at syscall exit.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"

#ifndef MAX_ENTRIES
#define MAX_ENTRIES 4096
#endif

struct err_key {
    u32 nr;
    u32 err;
};

// LRU: a flood of distinct pairs evicts old ones instead of failing updates.
BPF_TABLE("lru_hash", struct err_key, u64, errors, MAX_ENTRIES);

static __always_inline int count(u64 nr, long ret)
{
    if (ret >= 0 || ret < -4095)
        return 0;
    struct err_key key = {.nr = nr, .err = -ret};
    u64 zero = 0;
    bpfwatch_add(errors.lookup_or_try_init(&key, &zero), 1);  // bpfwatch.h: counts a full map
    return 0;
}

#ifdef HOOK_RAW_TRACEPOINT
int on_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    u64 nr = 0;
    bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
    return count(nr, ctx->args[1]);
}
#endif

#ifdef HOOK_TRACEPOINT
int on_sys_exit(struct tracepoint__raw_syscalls__sys_exit *args)
{
    return count(args->id, args->ret);
}
#endif
