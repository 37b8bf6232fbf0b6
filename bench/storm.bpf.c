// A throwaway tracepoint storm for the streaming benchmark: one event per
// getppid() of the benchmark workload (comm "bpfbench_wl"), sent over a ring
// buffer (RINGBUF) or a perf buffer; attempts and failed sends are counted
// in the kernel so that loss is counted, not guessed.
#ifndef PAD
#define PAD 40
#endif

struct event {
    u64 ts;
    u32 pid;
    u32 cpu;
    u64 seq;
    char pad[PAD];
};

BPF_PERCPU_ARRAY(counts, u64, 2);  // 0: attempts, 1: sends that failed
BPF_PERCPU_ARRAY(scratch, struct event, 1);
#ifdef RINGBUF
BPF_RINGBUF_OUTPUT(events, PAGES);
#else
BPF_PERF_OUTPUT(events);
#endif

static __always_inline void bump(int i)
{
    u64 *v = counts.lookup(&i);
    if (v)
        (*v)++;
}

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    char comm[16];
    bpf_get_current_comm(comm, sizeof(comm));
    // "bpfbench_wl": the benchmark's own workload only
    if (comm[0] != 'b' || comm[1] != 'p' || comm[2] != 'f' || comm[3] != 'b' ||
        comm[8] != '_' || comm[9] != 'w' || comm[10] != 'l')
        return 0;
    u32 zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    bump(0);
    e->ts = bpf_ktime_get_ns();
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->cpu = bpf_get_smp_processor_id();
    e->seq++;
#ifdef RINGBUF
    if (events.ringbuf_output(e, sizeof(*e), 0))
#else
    if (events.perf_submit(args, e, sizeof(*e)))
#endif
        bump(1);
    return 0;
}
