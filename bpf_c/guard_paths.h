// guard's kernel-side path helpers: struct offsets, the d_path()-like
// walk over dentries and mounts, /proc/<pid>/mem recognition. No map calls
// here (BCC rewrites those only in the main file).
#ifndef GUARD_PATHS_H
#define GUARD_PATHS_H

// Kernel struct offsets: from BTF (-D) unless the headers match the kernel
// (then the headers are parsed: most of this program's compile time).
#ifndef OFF_TASK_REAL_PARENT  // the planner passes all of them or none
#include <linux/sched.h>
#include <linux/mm_types.h>
#include <linux/binfmts.h>
#include <linux/fs.h>
#include <linux/fs_struct.h>
#include <linux/fdtable.h>
#include <linux/dcache.h>
#include <linux/mount.h>
#define OFF_TASK_REAL_PARENT offsetof(struct task_struct, real_parent)
#define OFF_TASK_TGID offsetof(struct task_struct, tgid)
#define OFF_TASK_COMM offsetof(struct task_struct, comm)
#define OFF_TASK_MM offsetof(struct task_struct, mm)
#define OFF_TASK_FS offsetof(struct task_struct, fs)
#define OFF_TASK_FILES offsetof(struct task_struct, files)
#define OFF_MM_ARG_START offsetof(struct mm_struct, arg_start)
#define OFF_MM_ARG_END offsetof(struct mm_struct, arg_end)
#define OFF_BINPRM_FILE offsetof(struct linux_binprm, file)
#define OFF_BINPRM_FILENAME offsetof(struct linux_binprm, filename)
#define OFF_BINPRM_INTERP offsetof(struct linux_binprm, interp)
#define OFF_FILE_INODE offsetof(struct file, f_inode)
#define OFF_FILE_DENTRY offsetof(struct file, f_path.dentry)
#define OFF_FILE_MNT offsetof(struct file, f_path.mnt)
#define OFF_INODE_NLINK offsetof(struct inode, i_nlink)
#define OFF_DENTRY_PARENT offsetof(struct dentry, d_parent)
#define OFF_DENTRY_NAME offsetof(struct dentry, d_name.name)
#define OFF_DENTRY_NAME_LEN offsetof(struct dentry, d_name.len)
#define OFF_VFSMOUNT_ROOT offsetof(struct vfsmount, mnt_root)
#define OFF_FS_ROOT_MNT offsetof(struct fs_struct, root.mnt)
#define OFF_FS_ROOT_DENTRY offsetof(struct fs_struct, root.dentry)
#define OFF_FILES_FDT offsetof(struct files_struct, fdt)
#define OFF_FDT_FD offsetof(struct fdtable, fd)
#define OFF_FDT_MAX_FDS offsetof(struct fdtable, max_fds)
#endif
// struct mount is internal to fs/: its offsets come from BTF or not at all (see resolve_into).

#define PATH_LEN 256

// A file's absolute path is built backwards from its dentries into this.
#define RESOLVED_LEN 512  // a power of two: offsets are masked with it
struct resolved {
    char buf[RESOLVED_LEN + PATH_LEN];  // slack: the verifier sees every write in bounds
};

// The first '/' in p[from .. from+12), or 0: a pid, "self" or "thread-self" fits.
static __always_inline u32 slash_after(const char *p, u32 from)
{
    for (u32 i = 0; i < 12; i++) {
        u32 k = from + i;
        if (k >= GUARD_PATH_KEY_LEN)
            return 0;
        if (p[k] == '/')
            return k;
        if (p[k] == 0)
            return 0;
    }
    return 0;
}

static __always_inline int mem_at(const char *p, u32 k)  // "/mem" then the NUL at p[k]
{
    return p[k] == '/' && p[k + 1] == 'm' && p[k + 2] == 'e' && p[k + 3] == 'm' && p[k + 4] == 0;
}

// /proc/<x>/mem or /proc/<x>/task/<y>/mem (x, y up to 11 bytes), NUL-terminated
static __always_inline int is_proc_mem(const char *p)
{
    if (p[0] != '/' || p[1] != 'p' || p[2] != 'r' || p[3] != 'o' || p[4] != 'c' || p[5] != '/')
        return 0;
    u32 s = slash_after(p, 6);
    if (s < 7 || s > GUARD_PATH_KEY_LEN - 6)
        return 0;
    if (mem_at(p, s))
        return 1;
    if (p[s + 1] != 't' || p[s + 2] != 'a' || p[s + 3] != 's' || p[s + 4] != 'k' || p[s + 5] != '/')
        return 0;
    u32 t = slash_after(p, s + 6);
    if (t < s + 7 || t > GUARD_PATH_KEY_LEN - 5)
        return 0;
    return mem_at(p, t);
}

static __always_inline char *fd_file(long fd)
{
    char *task = (char *)bpf_get_current_task(), *files = 0, *fdt = 0, *fds = 0, *file = 0;
    u32 max_fds = 0;
    bpf_probe_read_kernel(&files, sizeof(files), task + OFF_TASK_FILES);
    bpf_probe_read_kernel(&fdt, sizeof(fdt), files + OFF_FILES_FDT);
    bpf_probe_read_kernel(&max_fds, sizeof(max_fds), fdt + OFF_FDT_MAX_FDS);
    bpf_probe_read_kernel(&fds, sizeof(fds), fdt + OFF_FDT_FD);
    if (fd < 0 || fd >= max_fds)
        return 0;
    bpf_probe_read_kernel(&file, sizeof(file), fds + fd * sizeof(file));
    return file;
}

// The path of an open file as d_path() would give it: walk the dentries up
// to the caller's root, crossing mounts. Returns the length with the NUL and
// leaves the path at *start in out, or 0 (too deep, too long).
#ifdef OFF_MOUNT_MNT
#define RESOLVE_DEPTH 24  // path components and mount crossings
static __always_inline u32 resolve_into(struct resolved *out, char *file, char **start)
{
    if (!out || !file)
        return 0;
    char *task = (char *)bpf_get_current_task(), *fs = 0;
    char *root_dentry = 0, *root_mnt = 0, *dentry = 0, *vfsmnt = 0;
    bpf_probe_read_kernel(&fs, sizeof(fs), task + OFF_TASK_FS);
    bpf_probe_read_kernel(&root_mnt, sizeof(root_mnt), fs + OFF_FS_ROOT_MNT);
    bpf_probe_read_kernel(&root_dentry, sizeof(root_dentry), fs + OFF_FS_ROOT_DENTRY);
    bpf_probe_read_kernel(&dentry, sizeof(dentry), file + OFF_FILE_DENTRY);
    bpf_probe_read_kernel(&vfsmnt, sizeof(vfsmnt), file + OFF_FILE_MNT);
    char *mnt = vfsmnt - OFF_MOUNT_MNT;
    u32 off = RESOLVED_LEN - 1, done = 0;
    out->buf[RESOLVED_LEN - 1] = 0;
    for (int i = 0; i < RESOLVE_DEPTH; i++) {
        if (dentry == root_dentry && vfsmnt == root_mnt) {
            done = 1;
            break;
        }
        char *mnt_root = 0, *parent = 0;
        bpf_probe_read_kernel(&mnt_root, sizeof(mnt_root), vfsmnt + OFF_VFSMOUNT_ROOT);
        bpf_probe_read_kernel(&parent, sizeof(parent), dentry + OFF_DENTRY_PARENT);
        int last = 0;
        if (dentry == mnt_root) {
            char *mnt_parent = 0;
            bpf_probe_read_kernel(&mnt_parent, sizeof(mnt_parent), mnt + OFF_MOUNT_PARENT);
            if (mnt == mnt_parent) {  // the global root
                done = 1;
                break;
            }
            bpf_probe_read_kernel(&dentry, sizeof(dentry), mnt + OFF_MOUNT_MOUNTPOINT);
            mnt = mnt_parent;
            vfsmnt = mnt + OFF_MOUNT_MNT;
            continue;
        }
        if (dentry == parent)  // a pseudo file (memfd, pipe): its name is all there is
            last = 1;
        u32 len = 0;
        const char *name = 0;
        bpf_probe_read_kernel(&len, sizeof(len), dentry + OFF_DENTRY_NAME_LEN);
        bpf_probe_read_kernel(&name, sizeof(name), dentry + OFF_DENTRY_NAME);
        if (len == 0 || len >= PATH_LEN || off < len + 1)
            return 0;
        // clang can prove these masks redundant and drop them; the verifier
        // needs them, so each value goes through an empty asm first
        off = off - len - 1;
        asm volatile("" : "+r"(off));
        off &= RESOLVED_LEN - 1;
        out->buf[off] = '/';
        asm volatile("" : "+r"(len));
        bpf_probe_read_kernel(&out->buf[(off + 1) & (RESOLVED_LEN - 1)], len & (PATH_LEN - 1), name);
        if (last) {
            done = 1;
            break;
        }
        dentry = parent;
    }
    if (!done)
        return 0;
    if (off == RESOLVED_LEN - 1) {  // the root itself
        off = RESOLVED_LEN - 2;
        out->buf[off] = '/';
    }
    *start = &out->buf[off & (RESOLVED_LEN - 1)];
    return RESOLVED_LEN - off;
}
#else
static __always_inline u32 resolve_into(struct resolved *out, char *file, char **start)
{
    return 0;  // no struct mount offsets (no BTF): paths as passed only
}
#endif

#endif
