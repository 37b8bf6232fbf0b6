// execsnoop: one event per exec, with its result.
// Enter records filename and argv per thread; exit adds the result and the
// new comm, then streams the event through the ring buffer.
#include <uapi/linux/ptrace.h>
#include "bpfwatch.h"

#if !defined(MAX_ARGS) || !defined(ARG_LEN)
#error "MAX_ARGS and ARG_LEN must be passed by Python (tracers/tools/execsnoop.py)"
#endif
#define FILENAME_LEN 256

#ifdef COUNT_ONLY
// Under the exporter: counters only, no ring buffer (nobody would read it).
// Keyed by cgroup under --per-container (bpfwatch_label_cgroup), else by 0.
struct error_key {
    u64 cgroup_id;
    u32 err;
    u32 pad;
};
BPF_TABLE("lru_hash", u64, u64, execs, 4096);
BPF_TABLE("lru_hash", struct error_key, u64, exec_errors, 4096);

static __always_inline int count_exec(long ret)
{
    if (bpfwatch_filtered_out())
        return 0;
    u64 cgroup = bpfwatch_label_cgroup(), zero = 0;
    bpfwatch_add(execs.lookup_or_try_init(&cgroup, &zero), 1);
    if (ret >= 0)
        return 0;
    struct error_key key = {.cgroup_id = cgroup, .err = -ret};
    bpfwatch_add(exec_errors.lookup_or_try_init(&key, &zero), 1);
    return 0;
}

#ifdef HOOK_TRACEPOINT
int on_execve_exit(struct tracepoint__syscalls__sys_exit_execve *args)
{
    return count_exec(args->ret);
}

int on_execveat_exit(struct tracepoint__syscalls__sys_exit_execveat *args)
{
    return count_exec(args->ret);
}
#endif

#ifdef HOOK_KPROBE
int on_execve_exit(struct pt_regs *ctx)
{
    return count_exec(PT_REGS_RC(ctx));
}
#endif
#else  // the event stream of `bpfwatch execsnoop`

// Offsets into task_struct: from kernel BTF (-D) unless headers match. Only
// then is <linux/sched.h> parsed: it is most of this program's compile time.
#if !defined(OFF_TASK_REAL_PARENT) || !defined(OFF_TASK_TGID)
#include <linux/sched.h>
#endif
#ifndef OFF_TASK_REAL_PARENT
#define OFF_TASK_REAL_PARENT offsetof(struct task_struct, real_parent)
#endif
#ifndef OFF_TASK_TGID
#define OFF_TASK_TGID offsetof(struct task_struct, tgid)
#endif

struct exec_event {
    u64 ts;
    u64 cgroup_id;
    u32 pid;
    u32 ppid;
    u32 uid;
    s32 retval;
    u32 argc;
    u32 argv_more;           // argv had more than MAX_ARGS entries
    u64 argv_cut;            // bit i: entry i was cut to ARG_LEN - 1 bytes
    u32 filename_truncated;  // cut to FILENAME_LEN - 1 bytes
    u32 pad;
    char comm[16];
    char filename[FILENAME_LEN];
    char argv[MAX_ARGS * ARG_LEN];  // flat: BCC's Python side can't map 2-D arrays
};

BPF_PERCPU_ARRAY(scratch, struct exec_event, 1);
BPF_HASH(pending, u32, struct exec_event, 1024);
BPF_RINGBUF_OUTPUT(events, 256);  // pages: 1 MiB

static __always_inline int record_enter(const char *filename, const char *const *argv)
{
    u32 zero = 0;
    struct exec_event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
#ifdef FILTER_PID
    if ((pid_tgid >> 32) != FILTER_PID)
        return 0;
#endif
    e->ts = bpf_ktime_get_ns();
    e->uid = (u32)bpf_get_current_uid_gid();
    e->argc = 0;
    e->argv_more = 0;
    e->argv_cut = 0;
    int len = bpf_probe_read_user_str(e->filename, sizeof(e->filename), filename);
    e->filename_truncated = bpfwatch_user_str_cut(len, sizeof(e->filename), filename);
#pragma unroll
    for (int i = 0; i < MAX_ARGS; i++) {
        const char *arg = NULL;
        bpf_probe_read_user(&arg, sizeof(arg), &argv[i]);
        if (!arg)
            goto done;
        len = bpf_probe_read_user_str(&e->argv[i * ARG_LEN], ARG_LEN, arg);
        if (bpfwatch_user_str_cut(len, ARG_LEN, arg))
            e->argv_cut |= 1ULL << i;
        e->argc = i + 1;
    }
    {
        const char *more = NULL;
        bpf_probe_read_user(&more, sizeof(more), &argv[MAX_ARGS]);
        e->argv_more = more != NULL;
    }
done:
    bpfwatch_checked_update(pending.update(&tid, e));
    return 0;
}

static __always_inline int emit_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct exec_event *e = pending.lookup(&tid);
    if (!e)
        return 0;
    if (bpfwatch_filtered_out()) {
        pending.delete(&tid);
        return 0;
    }
#ifdef FAILED_ONLY
    if (ret >= 0) {
        pending.delete(&tid);
        return 0;
    }
#endif
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct task_struct *parent = NULL;
    bpf_probe_read_kernel(&parent, sizeof(parent), (char *)task + OFF_TASK_REAL_PARENT);
    bpf_probe_read_kernel(&e->ppid, sizeof(e->ppid), (char *)parent + OFF_TASK_TGID);
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->retval = ret;
    e->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    if (events.ringbuf_output(e, sizeof(*e), 0))
        bpfwatch_count(BPFWATCH_STAT_EVENTS_DROPPED);
    pending.delete(&tid);
    return 0;
}

// A non-leader thread that execs takes over the leader's pid: move its entry.
int on_exec(struct tracepoint__sched__sched_process_exec *args)
{
    u32 old = args->old_pid, now = args->pid;
    if (old == now)
        return 0;
    struct exec_event *e = pending.lookup(&old);
    if (e) {
        bpfwatch_checked_update(pending.update(&now, e));
        pending.delete(&old);
    }
    return 0;
}

#ifdef HOOK_TRACEPOINT
int on_execve_enter(struct tracepoint__syscalls__sys_enter_execve *args)
{
    return record_enter(args->filename, args->argv);
}

int on_execveat_enter(struct tracepoint__syscalls__sys_enter_execveat *args)
{
    return record_enter(args->filename, args->argv);
}

int on_execve_exit(struct tracepoint__syscalls__sys_exit_execve *args)
{
    return emit_exit(args->ret);
}

int on_execveat_exit(struct tracepoint__syscalls__sys_exit_execveat *args)
{
    return emit_exit(args->ret);
}
#endif

#ifdef HOOK_KPROBE
// x86-64 syscall wrappers take the user registers as their one argument.
int on_execve_enter(struct pt_regs *ctx)
{
    struct pt_regs *regs = (struct pt_regs *)PT_REGS_PARM1(ctx);
    const char *filename = NULL;
    const char *const *argv = NULL;
    bpf_probe_read_kernel(&filename, sizeof(filename), &PT_REGS_PARM1(regs));
    bpf_probe_read_kernel(&argv, sizeof(argv), &PT_REGS_PARM2(regs));
    return record_enter(filename, argv);
}

int on_execve_exit(struct pt_regs *ctx)
{
    return emit_exit(PT_REGS_RC(ctx));
}
#endif
#endif  // COUNT_ONLY
