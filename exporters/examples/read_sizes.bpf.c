// Sizes of successful read() calls: a log2 histogram of bytes, per command
// name (the exporter sums the comm label away unless --per-process).
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"

struct slot_key {
    char comm[16];
    u32 slot;
};

struct comm_key {
    char comm[16];
};

BPF_TABLE("lru_hash", struct slot_key, u64, read_sizes, 10240);
BPF_TABLE("lru_hash", struct comm_key, u64, read_bytes, 1024);


static __always_inline int record(long ret)
{
    if (ret <= 0 || bpfwatch_filtered_out())
        return 0;
    struct slot_key key = {.slot = bpfwatch_log2_slot(ret)};
    bpf_get_current_comm(key.comm, sizeof(key.comm));
    u64 zero = 0;
    bpfwatch_add(read_sizes.lookup_or_try_init(&key, &zero), 1);  // bpfwatch.h: counts a full map
    struct comm_key ckey = {};
    __builtin_memcpy(ckey.comm, key.comm, sizeof(ckey.comm));
    bpfwatch_add(read_bytes.lookup_or_try_init(&ckey, &zero), ret);
    return 0;
}

#ifdef HOOK_TRACEPOINT
int on_read_exit(struct tracepoint__syscalls__sys_exit_read *args)
{
    return record(args->ret);
}
#endif

#ifdef HOOK_KPROBE
int on_read_exit(struct pt_regs *ctx)
{
    return record(PT_REGS_RC(ctx));
}
#endif
