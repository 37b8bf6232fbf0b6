// syscount: syscalls counted in the kernel, per syscall (and per process).
// Counted at entry, unless latency or failures are wanted: then at exit,
// where the duration and the result are known.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"

#define MAX_SYSCALLS 512

struct syscall_stats {
    u64 count;
    u64 total_ns;
};

struct proc_key {
    u32 pid;
    u32 nr;
};

struct proc_stats {
    u64 count;
    u64 total_ns;
    char comm[16];
};

struct cgroup_key {
    u64 cgroup_id;
    u32 nr;
    u32 pad;
};

// Indexed by syscall number: no hashing on the hot path.
BPF_PERCPU_ARRAY(syscalls, struct syscall_stats, MAX_SYSCALLS);
#ifdef PER_PROCESS
BPF_TABLE("lru_hash", struct proc_key, struct proc_stats, proc_syscalls, 10240);
#endif
#ifdef PER_CGROUP
BPF_TABLE("lru_hash", struct cgroup_key, struct syscall_stats, cgroup_syscalls, 10240);
#endif
#ifdef COUNT_AT_EXIT
// Entry time per thread. Entries are reused (0 = no syscall in flight), not
// deleted: one lookup at each end instead of update + lookup + delete. LRU,
// so threads that exit (exit_group never returns) make room for new ones.
BPF_TABLE("lru_hash", u32, u64, start, 10240);
#endif

static __always_inline void account(u32 nr, u64 ns)
{
    if (nr >= MAX_SYSCALLS)
        return;
    struct syscall_stats *s = syscalls.lookup(&nr);
    if (s) {
        s->count++;
        s->total_ns += ns;
    }
#ifdef PER_PROCESS
    struct proc_key key = {.pid = bpf_get_current_pid_tgid() >> 32, .nr = nr};
    struct proc_stats *p = proc_syscalls.lookup(&key);
    if (!p) {  // the comm is read once per process and syscall
        struct proc_stats fresh = {};
        bpf_get_current_comm(fresh.comm, sizeof(fresh.comm));
        p = bpfwatch_checked_init(proc_syscalls.lookup_or_try_init(&key, &fresh));
    }
    if (p) {
        __sync_fetch_and_add(&p->count, 1);
        __sync_fetch_and_add(&p->total_ns, ns);
    }
#endif
#ifdef PER_CGROUP
    struct cgroup_key ck = {.cgroup_id = bpf_get_current_cgroup_id(), .nr = nr};
    struct syscall_stats none = {};
    struct syscall_stats *c = bpfwatch_checked_init(cgroup_syscalls.lookup_or_try_init(&ck, &none));
    if (c) {
        __sync_fetch_and_add(&c->count, 1);
        __sync_fetch_and_add(&c->total_ns, ns);
    }
#endif
}

static __always_inline int on_enter_common(u64 nr)
{
#ifdef FILTER_SYSCALL
    if (nr != FILTER_SYSCALL)
        return 0;
#endif
    if (bpfwatch_filtered_out())
        return 0;
#ifdef COUNT_AT_EXIT
    u32 tid = bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    u64 *slot = start.lookup(&tid);
    if (slot)
        *slot = now;
    else
        bpfwatch_checked_update(start.update(&tid, &now));
#else
    account(nr, 0);
#endif
    return 0;
}

static __always_inline int on_exit_common(u64 nr, long ret)
{
#ifdef COUNT_AT_EXIT
    u32 tid = bpf_get_current_pid_tgid();
    u64 *began = start.lookup(&tid);
    if (!began || !*began)
        return 0;
    u64 ns = bpf_ktime_get_ns() - *began;
    *began = 0;
#ifdef FAILED_ONLY
    if (ret >= 0)
        return 0;
#endif
    account(nr, ns);
#endif
    return 0;
}

#ifdef HOOK_RAW_TRACEPOINT
// args[0] is the task's pt_regs; args[1] the syscall number (enter) or result (exit).
int on_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
    return on_enter_common(ctx->args[1]);
}

int on_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    u64 nr = 0;
    bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
    return on_exit_common(nr, ctx->args[1]);
}
#endif

#ifdef HOOK_TRACEPOINT
int on_sys_enter(struct tracepoint__raw_syscalls__sys_enter *args)
{
    return on_enter_common(args->id);
}

int on_sys_exit(struct tracepoint__raw_syscalls__sys_exit *args)
{
    return on_exit_common(args->id, args->ret);
}
#endif
