// Benchmark workloads, no Python on the hot path.
//   workload open N [RATE] open+close /dev/null N times (paced to RATE/s when
//                          given), print ns of CPU time per iteration (CPU, not
//                          wall: the probes run in this process's syscalls; time
//                          others take the CPU does not count)
//   workload getppid N [RATE]
//                          N getppid() calls (one tracepoint hit each), paced to
//                          RATE calls/s when given (busy-waiting), else flat out;
//                          prints "<calls> <seconds>"
//   workload exec N PATH [ARG...]
//                          posix_spawn PATH ARG... N times, one at a time; prints
//                          "<execs> <seconds>"
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s open|getppid N [RATE]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    if (!strcmp(argv[1], "open")) {
        double rate = argc > 3 ? atof(argv[3]) : 0, t0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        double w0 = now();
        for (long i = 0; i < n; i++) {
            if (rate > 0 && (i & 15) == 0)
                while (now() - w0 < i / rate)
                    ;
            int fd = open("/dev/null", O_RDONLY);
            if (fd < 0)
                return 1;
            close(fd);
        }
        printf("%.1f\n", (clock_s(CLOCK_PROCESS_CPUTIME_ID) - t0) * 1e9 / n);
        return 0;
    }
    if (!strcmp(argv[1], "getppid")) {
        double rate = argc > 3 ? atof(argv[3]) : 0, t0 = now();
        for (long i = 0; i < n; i++) {
            // Pace in batches of 64 calls: checking the clock per call would
            // cost as much as the call.
            if (rate > 0 && (i & 63) == 0)
                while (now() - t0 < i / rate)
                    ;
            syscall(SYS_getppid);
        }
        printf("%ld %.6f\n", n, now() - t0);
        return 0;
    }
    if (!strcmp(argv[1], "exec") && argc > 3) {
        extern char **environ;
        char **child = argv + 3;  // PATH ARG... NULL
        double t0 = now();
        for (long i = 0; i < n; i++) {
            pid_t pid;
            if (posix_spawn(&pid, argv[3], NULL, NULL, child, environ))
                return 1;
            waitpid(pid, NULL, 0);
        }
        printf("%ld %.6f\n", n, now() - t0);
        return 0;
    }
    fprintf(stderr, "unknown workload %s\n", argv[1]);
    return 2;
}
