// opensnoop: one event per open()/openat()/openat2(), with its result.
// Enter keeps the path pointer and flags per thread; exit reads the path
// (the kernel has faulted it in by then), filters, counts and streams.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"

#define PATH_LEN 256
#define MAX_ERRNO_SLOT 255

enum open_call { CALL_OPEN = 1, CALL_OPENAT = 2, CALL_OPENAT2 = 3, CALL_ANY = 4 };

struct open_start {
    u64 path;  // user pointer
    u64 flags;
    u64 how;   // openat2: user pointer to struct open_how, read at exit
    u32 call;
};

struct open_event {
    u64 ts;
    u64 flags;
    u64 cgroup_id;
    u32 pid;
    u32 tid;
    s32 ret;
    u32 uid;
    u32 call;
    u16 flags_unread;    // openat2's struct open_how could not be read: flags unknown
    u16 path_truncated;  // the path is longer than PATH_LEN - 1 bytes: cut
    char comm[16];
    char path[PATH_LEN];  // 8-aligned: the prefix check reads u64 words
};

BPF_HASH(pending, u32, struct open_start, 10240);
BPF_PERCPU_ARRAY(scratch, struct open_event, 1);
// Opens by result: slot 0 success, else the errno (the exporter's counter).
BPF_PERCPU_ARRAY(opens, u64, MAX_ERRNO_SLOT + 1);
#ifndef COUNT_ONLY
BPF_RINGBUF_OUTPUT(events, 1024);  // pages: 4 MiB, opens come in bursts
#endif

// --path-prefix arrives as PREFIX_LEN (1..32) and four little-endian u64
// words PREFIX_0..3: compare word by word, the last one masked.
static __always_inline int prefix_mismatch(const char *path, int len)
{
#ifdef PREFIX_LEN
    const u64 want[4] = {PREFIX_0, PREFIX_1, PREFIX_2, PREFIX_3};
    if (len - 1 < PREFIX_LEN)  // shorter than the prefix (stale bytes follow the NUL)
        return 1;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        if (i * 8 >= PREFIX_LEN)
            break;
        int n = PREFIX_LEN - i * 8;
        u64 mask = n >= 8 ? ~0ULL : (1ULL << (n * 8)) - 1;
        u64 word = 0;
        __builtin_memcpy(&word, path + i * 8, 8);
        if ((word & mask) != want[i])
            return 1;
    }
#endif
    return 0;
}

static __always_inline int record_enter_how(const char *path, u64 flags, const void *how, u32 call)
{
    if (bpfwatch_filtered_out())
        return 0;
    u32 tid = bpf_get_current_pid_tgid();
    struct open_start s = {.path = (u64)path, .flags = flags, .how = (u64)how, .call = call};
    bpfwatch_checked_update(pending.update(&tid, &s));
    return 0;
}

static __always_inline int record_enter(const char *path, u64 flags, u32 call)
{
    return record_enter_how(path, flags, NULL, call);
}

static __always_inline int emit(const char *path, u64 flags, u16 flags_unread, u32 call, long ret)
{
    u32 zero = 0;
    struct open_event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    int len = bpf_probe_read_user_str(e->path, sizeof(e->path), path);
    if (prefix_mismatch(e->path, len))
        return 0;
    e->path_truncated = bpfwatch_user_str_cut(len, sizeof(e->path), path);
    u32 slot = ret >= 0 ? 0 : (-ret > MAX_ERRNO_SLOT ? MAX_ERRNO_SLOT : -ret);
    u64 *count = opens.lookup(&slot);
    if (count)
        (*count)++;
#ifdef FAILED_ONLY
    if (ret >= 0)
        return 0;
#endif
#ifndef COUNT_ONLY
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_ns();
    e->flags = flags;
    e->flags_unread = flags_unread;
    e->pid = pid_tgid >> 32;
    e->tid = (u32)pid_tgid;
    e->ret = ret;
    e->uid = (u32)bpf_get_current_uid_gid();
    e->call = call;
    e->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    if (events.ringbuf_output(e, sizeof(*e), 0))
        bpfwatch_count(BPFWATCH_STAT_EVENTS_DROPPED);
#endif
    return 0;
}

static __always_inline int emit_exit(long ret)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct open_start *s = pending.lookup(&tid);
    if (!s)
        return 0;
    struct open_start copy = *s;
    pending.delete(&tid);
    u16 unread = 0;
    // openat2: struct open_how starts with u64 flags (UAPI). Read here, not
    // at entry: the kernel has copied it now, so its page is mapped (a BPF
    // read cannot fault a page in). A failed read is marked, never 0 flags.
    if (copy.how && bpf_probe_read_user(&copy.flags, sizeof(copy.flags), (const void *)copy.how))
        unread = 1;
    return emit((const char *)copy.path, copy.flags, unread, copy.call, ret);
}

#ifdef HOOK_TRACEPOINT
// Syscall tracepoint records are fixed: 8 common bytes, the syscall number,
// then each argument in 8 bytes. Own structs keep BCC from needing a format
// file for sys_enter_open, which some architectures lack.
struct sys_enter_args {
    u64 common;
    s32 nr;
    u32 pad;
    u64 args[6];
};

struct sys_exit_args {
    u64 common;
    s32 nr;
    u32 pad;
    s64 ret;
};

int on_open_enter(struct sys_enter_args *ctx)
{
    return record_enter((const char *)ctx->args[0], (u32)ctx->args[1], CALL_OPEN);
}

int on_openat_enter(struct sys_enter_args *ctx)
{
    return record_enter((const char *)ctx->args[1], (u32)ctx->args[2], CALL_OPENAT);
}

int on_openat2_enter(struct sys_enter_args *ctx)
{
    return record_enter_how((const char *)ctx->args[1], 0, (void *)ctx->args[2], CALL_OPENAT2);
}

int on_open_exit(struct sys_exit_args *ctx)
{
    return emit_exit(ctx->ret);
}
#endif

#ifdef HOOK_KPROBE
// x86-64 syscall wrappers take the user registers as their one argument.
static __always_inline u64 user_arg(struct pt_regs *ctx, int n)
{
    struct pt_regs *regs = (struct pt_regs *)PT_REGS_PARM1(ctx);
    u64 v = 0;
    if (n == 1)
        bpf_probe_read_kernel(&v, sizeof(v), &PT_REGS_PARM1(regs));
    else if (n == 2)
        bpf_probe_read_kernel(&v, sizeof(v), &PT_REGS_PARM2(regs));
    else
        bpf_probe_read_kernel(&v, sizeof(v), &PT_REGS_PARM3(regs));
    return v;
}

int on_open_enter(struct pt_regs *ctx)
{
    return record_enter((const char *)user_arg(ctx, 1), (u32)user_arg(ctx, 2), CALL_OPEN);
}

int on_openat_enter(struct pt_regs *ctx)
{
    return record_enter((const char *)user_arg(ctx, 2), (u32)user_arg(ctx, 3), CALL_OPENAT);
}

int on_openat2_enter(struct pt_regs *ctx)
{
    return record_enter_how((const char *)user_arg(ctx, 2), 0, (void *)user_arg(ctx, 3), CALL_OPENAT2);
}

int on_open_exit(struct pt_regs *ctx)
{
    return emit_exit(PT_REGS_RC(ctx));
}
#endif

#ifdef HOOK_FEXIT
#include <uapi/linux/openat2.h>
// One hook for every open syscall; BCC names it kretfunc__do_sys_openat2
// and attaches it at load time.
KRETFUNC_PROBE(do_sys_openat2, int dfd, const char *filename, struct open_how *how, long ret)
{
    if (bpfwatch_filtered_out())
        return 0;
    return emit(filename, how->flags, 0, CALL_ANY, ret);
}
#endif
