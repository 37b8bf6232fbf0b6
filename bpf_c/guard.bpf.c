// guard: security rules matched in the kernel.
// Each hook asks one index for candidate rules (an LPM trie of paths or of
// CIDRs, or a -D mask of the kind's rules). An event no rule wants stops
// there: nothing is copied to user space. A hit is counted per rule,
// streamed, and a kill rule sends SIGKILL to the caller, which dies before
// it next runs in user space. Rules arrive as map entries written by
// tracers/tools/guard.py; sizes and codes as -D integers.
#include <uapi/linux/ptrace.h>
#include <linux/socket.h>
#include "bpfwatch.h"

#ifdef HOOK_LSM_CONNECT  // the stock kernels with BPF LSM have module tracepoints
#define HOOK_MODULE_TRACEPOINTS 1
#endif

#if !defined(GUARD_RULES_PER_KIND) || !defined(GUARD_SELF_PID) || !defined(GUARD_MASK_EXEC)
#error "guard: layout, GUARD_SELF_PID and rule masks are passed by tracers/tools/guard.py"
#endif

#include "guard_paths.h"

#define ARGS_LEN 256  // raw argv area per exec alert (NUL-separated), 255 bytes used
#define X86_O_CREAT 00000100
#define X86_O_TRUNC 00001000

struct counter_key {
    char rule[GUARD_NAME_LEN];
    char severity[GUARD_SEVERITY_LEN];
};

struct rule {
    u32 action;  // 0 alert, ACTION_KILL, else a kill turned into an alert (--dry-run)
    u32 conds;   // COND_* bits
    u32 uid_min;
    u32 uid_max;
    u32 access;  // open: 0 any, ACCESS_WRITE, ACCESS_READ
    u32 argv_len;
    u16 ports[GUARD_PORTS];
    u32 cgroup_levels[GUARD_CGROUPS];  // 0: unused slot (the root is never a condition)
    u64 cgroup_ids[GUARD_CGROUPS];     // the cgroup (or container) and everything below it
    u64 argv[GUARD_ARGV_BYTES / 8];  // argv[0..n] with their NULs, as words
    struct counter_key label;        // the key of this rule's counter in `alerts`
};

struct path_key {  // LPM: prefixlen counts the kind byte and the path bytes
    u32 prefixlen;
    u8 kind;
    char path[GUARD_PATH_KEY_LEN];
};

struct cidr_key {  // LPM: prefixlen counts the family byte and the address bits
    u32 prefixlen;
    u8 family;  // 4 or 6
    u8 addr[16];
};

struct comm_key {
    u32 index;  // rule: kind * GUARD_RULES_PER_KIND + slot
    u32 list;   // LIST_*
    char comm[16];
};

struct alert {
    u64 ts;
    u64 cgroup;
    u32 index;
    u32 pid;
    u32 ppid;
    u32 uid;
    s32 action;  // the rule's action; a kill the kernel refused: -errno
    u32 flags;   // open flags, ptrace request, syscall number, bpf prog type
    u32 target;  // ptrace pid, the id asked for, module fd
    u32 args_len;
    u16 family;
    u16 port;
    u8 path_truncated;  // path, file: cut to PATH_LEN - 1 bytes
    u8 file_truncated;
    u8 args_truncated;  // argv did not fit in args (or was unreadable)
    u8 pad;
    u8 addr[16];
    char comm[16];
    char parent_comm[16];
    char path[PATH_LEN];  // as the caller passed it
    char file[PATH_LEN];  // the file's own path, from the kernel's dentries (exec; relative opens)
    char args[ARGS_LEN];
};

struct retry {  // a path or address unreadable at entry, or a relative path: at exit
    u64 ptr;
    u64 flags;
};

BPF_ARRAY(rules, struct rule, GUARD_KINDS * GUARD_RULES_PER_KIND);
BPF_LPM_TRIE(path_index, struct path_key, u32, GUARD_PATH_ENTRIES);
BPF_LPM_TRIE(cidr_index, struct cidr_key, u32, GUARD_CIDR_ENTRIES);
BPF_HASH(comm_sets, struct comm_key, u8, GUARD_COMM_ENTRIES);
// Rule hits: the exporter's bpfwatch_guard_alerts_total{rule,severity}.
BPF_HASH(alerts, struct counter_key, u64, GUARD_KINDS * GUARD_RULES_PER_KIND);
// Paths or addresses that could not be read even at syscall exit: not matched.
BPF_PERCPU_ARRAY(unreadable, u64, 1);
BPF_PERCPU_ARRAY(scratch, struct alert, 1);
BPF_PERCPU_ARRAY(lookup_key, struct path_key, 1);
BPF_PERCPU_ARRAY(resolved_path, struct resolved, 1);
BPF_HASH(retry_open, u32, struct retry, 4096);
BPF_HASH(retry_connect, u32, struct retry, 4096);
#ifndef GUARD_COUNT_ONLY
BPF_RINGBUF_OUTPUT(events, 64);  // pages: 256 KiB; alerts are rare
#endif

// Syscall tracepoint records: 8 common bytes, the number, six arguments.
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

static __always_inline void count_unreadable(void)
{
    u32 zero = 0;
    u64 *n = unreadable.lookup(&zero);
    if (n)
        (*n)++;
}

// Who is doing it: filled only once some rule is a candidate.
static __always_inline struct alert *begin_alert(void)
{
    u32 zero = 0;
    struct alert *a = scratch.lookup(&zero);
    if (!a)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    char *task = (char *)bpf_get_current_task();
    char *parent = 0;
    a->ts = bpf_ktime_get_ns();
    a->cgroup = bpf_get_current_cgroup_id();
    a->pid = pid_tgid >> 32;
    a->uid = (u32)bpf_get_current_uid_gid();
    a->flags = 0;
    a->target = 0;
    a->args_len = 0;
    a->family = 0;
    a->port = 0;
    a->path[0] = 0;
    a->file[0] = 0;
    a->path_truncated = 0;
    a->file_truncated = 0;
    a->args_truncated = 0;
    bpf_get_current_comm(a->comm, sizeof(a->comm));
    bpf_probe_read_kernel(&parent, sizeof(parent), task + OFF_TASK_REAL_PARENT);
    bpf_probe_read_kernel(&a->ppid, sizeof(a->ppid), parent + OFF_TASK_TGID);
    bpf_probe_read_kernel(a->parent_comm, sizeof(a->parent_comm), parent + OFF_TASK_COMM);
    return a;
}

static __always_inline int in_comm_list(u32 index, u32 list, const char *comm)
{
    struct comm_key key = {.index = index, .list = list};
    __builtin_memcpy(key.comm, comm, sizeof(key.comm));
    return comm_sets.lookup(&key) != 0;
}

// argv[0..n] of the rule against the start of the exec's argument area.
static __always_inline int argv_matches(struct rule *r, struct alert *a)
{
    u32 len = r->argv_len;
    if (a->args_len < len)
        return 0;
    for (int i = 0; i < GUARD_ARGV_BYTES / 8; i++) {
        if (i * 8 >= len)
            break;
        u32 n = len - i * 8;
        u64 mask = n >= 8 ? ~0ULL : (1ULL << (n * 8)) - 1;
        u64 word = 0;
        __builtin_memcpy(&word, a->args + i * 8, 8);
        if ((word & mask) != r->argv[i])
            return 0;
    }
    return 1;
}

static __always_inline int is_write(u32 flags)
{
    return (flags & 3) || (flags & (X86_O_CREAT | X86_O_TRUNC));
}

// Unused port slots repeat the first port: no zero slot can match port 0.
static __always_inline int port_listed(struct rule *r, u16 port)
{
    for (int i = 0; i < GUARD_PORTS; i++) {
        if (r->ports[i] == port)
            return 1;
    }
    return 0;
}

static __always_inline int in_cgroups(struct rule *r)
{
    for (int i = 0; i < GUARD_CGROUPS; i++) {
        u32 level = r->cgroup_levels[i];
        if (level && bpf_get_current_ancestor_cgroup_id(level) == r->cgroup_ids[i])
            return 1;
    }
    return 0;
}

static __always_inline int conditions_hold(struct rule *r, u32 index, struct alert *a)
{
    if (a->uid < r->uid_min || a->uid > r->uid_max)
        return 0;
    u32 conds = r->conds;
    if ((conds & COND_COMM) && !in_comm_list(index, LIST_COMM, a->comm))
        return 0;
    if ((conds & COND_NOT_COMM) && in_comm_list(index, LIST_NOT_COMM, a->comm))
        return 0;
    if ((conds & COND_PARENT_COMM) && !in_comm_list(index, LIST_PARENT_COMM, a->parent_comm))
        return 0;
    if ((conds & COND_NOT_PARENT_COMM) && in_comm_list(index, LIST_NOT_PARENT_COMM, a->parent_comm))
        return 0;
    if ((conds & COND_ARGV) && !argv_matches(r, a))
        return 0;
    if ((conds & COND_CGROUP) && !in_cgroups(r))
        return 0;
    if (r->access == ACCESS_WRITE && !is_write(a->flags))
        return 0;
    if (r->access == ACCESS_READ && is_write(a->flags))
        return 0;
    if (conds & COND_PORTS)
        return port_listed(r, a->port);
    return 1;
}

// 1 when the rule kills (not under --dry-run): an LSM hook then also refuses the call.
static __always_inline int fire(struct rule *r, u32 index, struct alert *a)
{
    u64 *hits = alerts.lookup(&r->label);
    if (hits)
        __sync_fetch_and_add(hits, 1);
    else
        bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
    s32 action = r->action;
    if (action == ACTION_KILL) {
        long err = bpf_send_signal(9);  // SIGKILL, delivered before user space runs again
        if (err)
            action = err;
    }
#ifndef GUARD_COUNT_ONLY
    a->index = index;
    a->action = action;
    if (events.ringbuf_output(a, sizeof(*a), 0))
        bpfwatch_count(BPFWATCH_STAT_EVENTS_DROPPED);
#endif
    return r->action == ACTION_KILL;
}

// Every candidate rule of `kind` (bits of mask) whose conditions hold fires.
// `mask` is ANDed with the kind's -D mask at each call: the verifier then
// knows which bits can be set and explores only that many iterations.
static __always_inline int match(u32 kind, u32 mask)
{
    u32 zero = 0;
    int kills = 0;
    struct alert *a = scratch.lookup(&zero);
    if (!a)
        return 0;
    for (u32 i = 0; i < GUARD_RULES_PER_KIND; i++) {
        if (!(mask >> i))
            break;
        if (!((mask >> i) & 1))
            continue;
        u32 index = kind * GUARD_RULES_PER_KIND + i;
        struct rule *r = rules.lookup(&index);
        if (r && conditions_hold(r, index, a))
            kills += fire(r, index, a);
    }
    return kills;
}

// The path index: the lookup key's bytes are those read (the NUL
// included, so exact paths match), or all but the last when the read may
// have been cut short.
static __always_inline u32 path_candidates(u32 kind, struct path_key *key, int len)
{
    if (len <= 0)
        return 0;
    u32 used = len < GUARD_PATH_KEY_LEN ? len : GUARD_PATH_KEY_LEN - 1;
    key->prefixlen = 8 * (1 + used);
    key->kind = kind;
    u32 *mask = path_index.lookup(key);
    return mask ? *mask : 0;
}

static __always_inline struct path_key *path_key(void)
{
    u32 zero = 0;
    return lookup_key.lookup(&zero);
}

static __always_inline u32 resolve_file(char *file, char **start)
{
    u32 zero = 0;
    return resolve_into(resolved_path.lookup(&zero), file, start);
}

// The resolved path into the lookup key (and the alert, when there is one).
static __always_inline u32 resolved_candidates(u32 kind, struct path_key *key, char *file)
{
    char *start = 0;
    u32 len = resolve_file(file, &start);
    if (!len || !start)
        return 0;
    bpf_probe_read_kernel(key->path, sizeof(key->path), start);
    return path_candidates(kind, key, len);
}

static __always_inline void resolved_into(struct alert *a, char *file)
{
    char *start = 0;
    a->file[0] = 0;
    u32 len = resolve_file(file, &start);  // with the NUL
    if (len && start) {
        bpf_probe_read_kernel_str(a->file, sizeof(a->file), start);
        a->file_truncated = len > sizeof(a->file);
    }
}

// ---- exec and fileless exec: after the new image is in place, before it runs
int on_exec(struct bpf_raw_tracepoint_args *ctx)
{
    if (bpfwatch_filtered_out())
        return 0;
    char *bprm = (char *)ctx->args[2];
    u32 exec_mask = GUARD_EXEC_ANY, fileless_mask = 0;
#if GUARD_MASK_EXEC
    struct path_key *key = path_key();
    if (!key)
        return 0;
    const char *filename = 0, *interp = 0;
    bpf_probe_read_kernel(&filename, sizeof(filename), bprm + OFF_BINPRM_FILENAME);
    bpf_probe_read_kernel(&interp, sizeof(interp), bprm + OFF_BINPRM_INTERP);
    int len = bpf_probe_read_kernel_str(key->path, sizeof(key->path), filename);
    exec_mask |= path_candidates(KIND_EXEC, key, len);
    if (interp != filename) {  // a script: its interpreter counts too
        len = bpf_probe_read_kernel_str(key->path, sizeof(key->path), interp);
        exec_mask |= path_candidates(KIND_EXEC, key, len);
    }
    char *exe = 0;  // what really runs: "./x" from /tmp is /tmp/x
    bpf_probe_read_kernel(&exe, sizeof(exe), bprm + OFF_BINPRM_FILE);
    exec_mask |= resolved_candidates(KIND_EXEC, key, exe);
#endif
#if GUARD_MASK_FILELESS_EXEC
    char *file = 0, *inode = 0;
    u32 nlink = 1;
    bpf_probe_read_kernel(&file, sizeof(file), bprm + OFF_BINPRM_FILE);
    bpf_probe_read_kernel(&inode, sizeof(inode), file + OFF_FILE_INODE);
    if (!bpf_probe_read_kernel(&nlink, sizeof(nlink), inode + OFF_INODE_NLINK) && nlink == 0)
        fileless_mask = GUARD_MASK_FILELESS_EXEC;
#endif
    if (!(exec_mask | fileless_mask))
        return 0;
    struct alert *a = begin_alert();
    if (!a)
        return 0;
    const char *name = 0;
    bpf_probe_read_kernel(&name, sizeof(name), bprm + OFF_BINPRM_FILENAME);
    int kept = bpf_probe_read_kernel_str(a->path, sizeof(a->path), name);
    a->path_truncated = bpfwatch_kernel_str_cut(kept, sizeof(a->path), name);
    char *executed = 0;
    bpf_probe_read_kernel(&executed, sizeof(executed), bprm + OFF_BINPRM_FILE);
    resolved_into(a, executed);
    // argv is already on the new stack: mm->arg_start .. arg_end
    char *task = (char *)bpf_get_current_task(), *mm = 0;
    u64 start = 0, end = 0;
    bpf_probe_read_kernel(&mm, sizeof(mm), task + OFF_TASK_MM);
    bpf_probe_read_kernel(&start, sizeof(start), mm + OFF_MM_ARG_START);
    bpf_probe_read_kernel(&end, sizeof(end), mm + OFF_MM_ARG_END);
    u64 total = end > start ? end - start : 0, n = total;
    if (n > ARGS_LEN - 1)
        n = ARGS_LEN - 1;
    asm volatile("" : "+r"(n));  // keep the mask below: clang would drop it, the verifier needs it
    n &= ARGS_LEN - 1;
    if (n && !bpf_probe_read_user(a->args, n, (void *)start))
        a->args_len = n;
    // cut when more than the last argument's NUL was left out
    a->args_truncated = total > a->args_len + 1;
    match(KIND_EXEC, exec_mask & GUARD_MASK_EXEC);
    match(KIND_FILELESS_EXEC, fileless_mask & GUARD_MASK_FILELESS_EXEC);
    return 0;
}

// ---- open: the path at entry; if it is not paged in yet, again at exit
static __always_inline void open_later(const char *path, u32 flags)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct retry r = {.ptr = (u64)path, .flags = flags};
    if (retry_open.update(&tid, &r))
        bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
}

// key holds the absolute path (as passed, or resolved: then file is set).
static __always_inline int open_matched(struct path_key *key, int len, const char *path, u32 flags,
                                        char *file)
{
    u32 open_mask = 0, mem_mask = 0;
#if GUARD_MASK_OPEN
    open_mask = path_candidates(KIND_OPEN, key, len);
#endif
#if GUARD_MASK_PROC_MEM_WRITE
    if (is_write(flags) && is_proc_mem(key->path))
        mem_mask = GUARD_MASK_PROC_MEM_WRITE;
#endif
    if (!(open_mask | mem_mask))
        return 0;
    struct alert *a = begin_alert();
    if (!a)
        return 0;
    a->flags = flags;
    int kept = bpf_probe_read_user_str(a->path, sizeof(a->path), path);
    a->path_truncated = bpfwatch_user_str_cut(kept, sizeof(a->path), path);
    if (file)
        resolved_into(a, file);
    match(KIND_OPEN, open_mask & GUARD_MASK_OPEN);
    match(KIND_PROC_MEM_WRITE, mem_mask & GUARD_MASK_PROC_MEM_WRITE);
    return 0;
}

// An absolute path is matched at entry. A relative one (or one not paged
// in yet) waits for the exit: then the new fd's file gives the real path.
static __always_inline int open_enter(const char *path, u32 flags)
{
    if (bpfwatch_filtered_out())
        return 0;
    struct path_key *key = path_key();
    if (!key)
        return 0;
    int len = bpf_probe_read_user_str(key->path, sizeof(key->path), path);
    if (len <= 0 || key->path[0] != '/') {
        open_later(path, flags);
        return 0;
    }
    return open_matched(key, len, path, flags, 0);
}

int on_open_enter(struct sys_enter_args *ctx)
{
    return open_enter((const char *)ctx->args[0], ctx->args[1]);
}

int on_openat_enter(struct sys_enter_args *ctx)
{
    return open_enter((const char *)ctx->args[1], ctx->args[2]);
}

int on_openat2_enter(struct sys_enter_args *ctx)
{
    u64 flags = 0;  // struct open_how starts with u64 flags (UAPI)
    bpf_probe_read_user(&flags, sizeof(flags), (void *)ctx->args[2]);
    return open_enter((const char *)ctx->args[1], flags);
}

int on_open_exit(struct sys_exit_args *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct retry *r = retry_open.lookup(&tid);
    if (!r)
        return 0;
    struct retry copy = *r;
    retry_open.delete(&tid);
    const char *path = (const char *)copy.ptr;
    struct path_key *key = path_key();
    if (!key)
        return 0;
    int len = bpf_probe_read_user_str(key->path, sizeof(key->path), path);
    char *file = 0;
    if (len <= 0 || key->path[0] != '/') {  // one call of open_matched below: half the verifying
        if (ctx->ret < 0) {  // a relative open that failed opened nothing to resolve
            if (len <= 0)
                count_unreadable();
            return 0;
        }
        char *start = 0;
        file = fd_file(ctx->ret);
        len = resolve_file(file, &start);
        if (!len || !start) {
            count_unreadable();
            return 0;
        }
        bpf_probe_read_kernel(key->path, sizeof(key->path), start);
    }
    return open_matched(key, len, path, copy.flags, file);
}

// ---- connect: the destination address against the CIDR trie
// The syscall tracepoints read the caller's memory; the LSM hook the kernel's copy.
static __always_inline long read_sockaddr(u8 *sa, u32 len, const void *addr, int in_kernel)
{
    return in_kernel ? bpf_probe_read_kernel(sa, len, addr) : bpf_probe_read_user(sa, len, addr);
}

// How many kill rules fired.
static __always_inline int check_connect(const void *uaddr, int at_exit, int in_kernel)
{
    u8 sa[28] = {};
    struct cidr_key key = {};
    if (read_sockaddr(sa, 16, uaddr, in_kernel))
        goto unreadable;
    u16 family = *(u16 *)sa;
    if (family == AF_INET) {
        key.family = 4;
        __builtin_memcpy(key.addr, sa + 4, 4);
    } else if (family == AF_INET6) {
        if (read_sockaddr(sa, 28, uaddr, in_kernel))
            goto unreadable;
        u32 *w = (u32 *)(sa + 8);
        if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {  // v4-mapped
            key.family = 4;
            __builtin_memcpy(key.addr, sa + 20, 4);
        } else {
            key.family = 6;
            __builtin_memcpy(key.addr, sa + 8, 16);
        }
    } else {
        return 0;
    }
    key.prefixlen = 8 + (key.family == 4 ? 32 : 128);
    u32 *mask = cidr_index.lookup(&key);
    if (!mask || !*mask)
        return 0;
    u32 candidates = *mask;
    struct alert *a = begin_alert();
    if (!a)
        return 0;
    a->family = key.family;
    a->port = bpf_ntohs(*(u16 *)(sa + 2));
    __builtin_memcpy(a->addr, key.addr, 16);
    return match(KIND_CONNECT, candidates & GUARD_MASK_CONNECT);
unreadable:
    if (at_exit) {
        count_unreadable();
        return 0;
    }
    {
        u32 tid = bpf_get_current_pid_tgid();
        struct retry r = {.ptr = (u64)uaddr};
        if (retry_connect.update(&tid, &r))
            bpfwatch_count(BPFWATCH_STAT_MAP_UPDATE_FAILURES);
    }
    return 0;
}

#ifndef HOOK_LSM_CONNECT
int on_connect(struct sys_enter_args *ctx)
{
    if (bpfwatch_filtered_out())
        return 0;
    check_connect((const void *)ctx->args[1], 0, 0);
    return 0;
}

int on_connect_exit(struct sys_exit_args *ctx)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct retry *r = retry_connect.lookup(&tid);
    if (!r)
        return 0;
    u64 ptr = r->ptr;
    retry_connect.delete(&tid);
    check_connect((const void *)ptr, 1, 0);
    return 0;
}
#elif GUARD_MASK_CONNECT
// BPF LSM: a kill rule also refuses the connect itself (EPERM): no packet
// leaves. BCC loads and attaches lsm__ programs itself, so it exists only
// when there are connect rules.
struct socket;  // declared: a struct first named in a parameter list is local to it
LSM_PROBE(socket_connect, struct socket *sock, struct sockaddr *address, int addrlen, int ret)
{
    if (ret || bpfwatch_filtered_out())
        return ret;
    return check_connect(address, 1, 1) ? -EPERM : 0;
}
#endif

// ---- kinds that need no index: the kind's mask is a -D integer
static __always_inline int fire_simple(u32 kind, u32 mask, u32 flags, u32 target)
{
    struct alert *a = begin_alert();
    if (!a)
        return 0;
    a->flags = flags;
    a->target = target;
    match(kind, mask);
    return 0;
}

// setuid family to 0 from a non-zero id, or capset with a non-empty
// effective set, by a caller whose (real) uid is not 0. One entry point per
// argument count: the kernel refuses a program that reads past a record.
static __always_inline int privilege(long nr, u32 a0, u32 a1, u32 a2, void *caps)
{
    if (!GUARD_MASK_PRIVILEGE || bpfwatch_filtered_out())
        return 0;
    u64 ids = bpf_get_current_uid_gid();
    int gid_call = nr == NR_SETGID || nr == NR_SETREGID || nr == NR_SETRESGID;
    u32 caller = gid_call ? ids >> 32 : (u32)ids;
    if (caller == 0)
        return 0;
    u32 asked = 0;
    if (nr == NR_CAPSET) {
        // struct __user_cap_data_struct starts with the effective set
        bpf_probe_read_user(&asked, sizeof(asked), caps);
        if (!asked)
            return 0;
    } else if (a0 != 0 && a1 != 0 && a2 != 0) {
        return 0;
    }
    return fire_simple(KIND_PRIVILEGE, GUARD_MASK_PRIVILEGE, nr, asked);
}

struct sys_enter_1 {
    u64 common;
    s32 nr;
    u32 pad;
    u64 args[1];
};

struct sys_enter_2 {
    u64 common;
    s32 nr;
    u32 pad;
    u64 args[2];
};

int on_set_id(struct sys_enter_1 *ctx)  // setuid, setgid
{
    return privilege(ctx->nr, ctx->args[0], ctx->args[0], ctx->args[0], 0);
}

int on_set_re_id(struct sys_enter_2 *ctx)  // setreuid, setregid
{
    return privilege(ctx->nr, ctx->args[0], ctx->args[1], ctx->args[1], 0);
}

int on_set_res_id(struct sys_enter_args *ctx)  // setresuid, setresgid
{
    return privilege(ctx->nr, ctx->args[0], ctx->args[1], ctx->args[2], 0);
}

int on_capset(struct sys_enter_2 *ctx)
{
    return privilege(ctx->nr, 1, 1, 1, (void *)ctx->args[1]);
}

int on_ptrace(struct sys_enter_args *ctx)
{
    if (!GUARD_MASK_PTRACE || bpfwatch_filtered_out())
        return 0;
    long request = ctx->args[0];
    u32 target = ctx->args[1];
    if (request != 16 && request != 0x4206)  // PTRACE_ATTACH, PTRACE_SEIZE
        return 0;
    if (target == bpf_get_current_pid_tgid() >> 32)
        return 0;
    return fire_simple(KIND_PTRACE, GUARD_MASK_PTRACE, request, target);
}

int on_bpf(struct sys_enter_args *ctx)
{
    if (!GUARD_MASK_BPF_LOAD || bpfwatch_filtered_out())
        return 0;
    if (ctx->args[0] != 5)  // BPF_PROG_LOAD
        return 0;
    if (bpf_get_current_pid_tgid() >> 32 == GUARD_SELF_PID)
        return 0;
    u32 prog_type = 0;  // union bpf_attr starts with prog_type for BPF_PROG_LOAD
    bpf_probe_read_user(&prog_type, sizeof(prog_type), (void *)ctx->args[1]);
    return fire_simple(KIND_BPF_LOAD, GUARD_MASK_BPF_LOAD, prog_type, 0);
}

// Module loads: init_module/finit_module tracepoints where the kernel has
// them; a kernel built without module support has none, but the syscalls
// still exist (they fail): there, raw sys_enter filtered by number.
#ifdef HOOK_MODULE_TRACEPOINTS
int on_module_load(struct sys_enter_args *ctx)
{
    if (!GUARD_MASK_MODULE_LOAD || bpfwatch_filtered_out())
        return 0;
    return fire_simple(KIND_MODULE_LOAD, GUARD_MASK_MODULE_LOAD, ctx->nr,
                       ctx->nr == NR_FINIT_MODULE ? ctx->args[0] : 0);
}
#endif

#ifdef HOOK_MODULE_RAW
int on_module_syscall(struct bpf_raw_tracepoint_args *ctx)
{
    long nr = ctx->args[1];
    if (nr != NR_INIT_MODULE && nr != NR_FINIT_MODULE)
        return 0;
    if (!GUARD_MASK_MODULE_LOAD || bpfwatch_filtered_out())
        return 0;
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    u64 fd = 0;
    bpf_probe_read_kernel(&fd, sizeof(fd), &PT_REGS_PARM1(regs));
    return fire_simple(KIND_MODULE_LOAD, GUARD_MASK_MODULE_LOAD, nr, nr == NR_FINIT_MODULE ? fd : 0);
}
#endif
