/*
 * handover.c - what a synchronous call costs when it is handed to another
 * process and back, against the same work done in-process, when there are
 * more busy threads than CPUs.  Each client thread keeps one call in flight;
 * each call burns WORK_US of CPU in work().  Next to the socket mechanisms
 * runs the leanest one (a futex on shared memory), as their floor.
 *
 *   inproc    THREADS threads each call work() directly (the baseline)
 *   sock      an AF_UNIX socketpair per client thread, a server thread per
 *             connection in a child process, blocking read()
 *   sockpoll  as sock, but every read() first waits in poll(POLLIN)
 *   futex     a shared-memory slot per client thread, a server thread per
 *             slot in a child process, FUTEX_WAIT/FUTEX_WAKE on the slot
 *
 * Run all:  bash scripts/handover-floor.sh   (builds, calibrates once)
 * By hand:  cc -O2 -Wall -Wextra -pthread -o handover handover.c
 *           [WORK_ITERS=N] ./handover MODE THREADS WORK_US DURATION_MS
 *           ./handover calib WORK_US    (prints work_iters=N work_us_measured=X)
 * Prints:   mode=.. threads=.. work_us=.. ops_per_s=.. cpu_us_per_op=.. ctxsw_per_op=..
 * An op is one completed call, counted over DURATION_MS after a 100 ms
 * warm-up.  CPU time is user+system of both processes (getrusage in each);
 * context switches are summed over /proc/PID/task/TID/status of both.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CL 64  /* cache line size */
#define MSG 64 /* request and response size in the socket modes */
#define WARMUP_MS 100
/* Not FUTEX_PRIVATE_FLAG: the words are shared between two processes. */
#define FUTEX(w, op, val) syscall(SYS_futex, (uint32_t *)(w), (op), (val), NULL, NULL, 0)

enum { M_INPROC, M_SOCK, M_SOCKPOLL, M_FUTEX, M_COUNT };
static const char *const mode_names[M_COUNT] = {"inproc", "sock", "sockpoll", "futex"};
enum { ST_IDLE, ST_REQ, ST_RESP, ST_STOP }; /* futex slot states */

struct slot { _Atomic uint32_t state; } __attribute__((aligned(CL)));
struct counter { _Atomic uint64_t n; } __attribute__((aligned(CL)));

struct shm { /* MAP_SHARED, zero-filled: slots start ST_IDLE */
    /* child CPU-time snapshots, taken by the child's main thread on request */
    _Atomic uint32_t snap_req __attribute__((aligned(CL)));
    _Atomic uint32_t snap_ack __attribute__((aligned(CL)));
    uint64_t child_cpu_us[2];
    struct slot slots[]; /* futex mode: one per client thread */
};

/* Set before any thread starts, only read afterwards. */
static int g_mode, g_threads;
static uint64_t work_iters;
static volatile uint64_t work_seed = 0x9E3779B97F4A7C15ull;
static struct shm *S;
static struct counter *counters;
static int (*sock_fd)[2]; /* [i][0] client end, [i][1] server end */
static pid_t child_pid;
static _Atomic int cli_stop, g_error; /* written once, at teardown or on error */

/* work(): a dependent xorshift chain.  The result goes to a thread-local sink,
 * so work() writes no cache line that another thread reads. */
static _Thread_local volatile uint64_t work_sink;

static void work_n(uint64_t n)
{
    uint64_t x = work_seed;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    work_sink = x;
}

static uint64_t ns_of(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

static void die(const char *msg) { perror(msg); exit(1); }

static uint64_t cpu_us_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Voluntary + involuntary context switches, summed over the threads of pid. */
static uint64_t ctxsw_of(pid_t pid)
{
    char path[64], line[256];
    uint64_t sum = 0;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.16s/status", (int)pid, de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f)) {
            char *p = strstr(line, "ctxt_switches:"); /* voluntary_ and nonvoluntary_ */
            if (p) sum += strtoull(p + strlen("ctxt_switches:"), NULL, 10);
        }
        fclose(f);
    }
    closedir(d);
    return sum;
}

/* Move one MSG-byte message, waiting in poll(POLLIN) before each read if
 * use_poll.  Returns 1 on success, 0 on EOF, -1 on error. */
static int sock_xfer(int fd, char *buf, int writing, int use_poll)
{
    size_t done = 0;
    while (done < MSG) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (!writing && use_poll && poll(&p, 1, -1) < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        ssize_t r = writing ? write(fd, buf + done, MSG - done) : read(fd, buf + done, MSG - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r < 0 ? -1 : 0;
        done += (size_t)r;
    }
    return 1;
}

/* Futex hand-over.  Each side waits only for a value the other side stores,
 * and every store is followed by FUTEX_WAKE, so the one waiter that can exist
 * is the one woken.  FUTEX_WAIT sleeps only while the word still holds the
 * value just loaded: a store + wake landing between our load and our sleep
 * makes it return at once, so no wake-up (ST_STOP included) can be lost. */
static void post(_Atomic uint32_t *w, uint32_t v)
{
    atomic_store_explicit(w, v, memory_order_release);
    FUTEX(w, FUTEX_WAKE, 1);
}

/* Wait until the slot holds want or ST_STOP; return which. */
static uint32_t wait_state(_Atomic uint32_t *w, uint32_t want)
{
    for (;;) {
        uint32_t v = atomic_load_explicit(w, memory_order_acquire);
        if (v == want || v == ST_STOP) return v;
        FUTEX(w, FUTEX_WAIT, v);
    }
}

/* Wait until the (increasing) counter *w exceeds k. */
static void wait_above(_Atomic uint32_t *w, uint32_t k)
{
    uint32_t v;
    while ((v = atomic_load_explicit(w, memory_order_acquire)) <= k) FUTEX(w, FUTEX_WAIT, v);
}

static void *client_thread(void *arg)
{
    int i = (int)(intptr_t)arg;
    char buf[MSG];
    memset(buf, 'q', sizeof buf);
    while (!atomic_load_explicit(&cli_stop, memory_order_relaxed)) {
        if (g_mode == M_INPROC) {
            work_n(work_iters);
        } else if (g_mode == M_FUTEX) {
            post(&S->slots[i].state, ST_REQ);
            wait_state(&S->slots[i].state, ST_RESP);
        } else if (sock_xfer(sock_fd[i][0], buf, 1, 0) != 1 ||
                   sock_xfer(sock_fd[i][0], buf, 0, g_mode == M_SOCKPOLL) != 1) {
            atomic_store(&g_error, 1);
            break;
        }
        /* one op per completed call; one writer per counter, so no locked add */
        uint64_t n = atomic_load_explicit(&counters[i].n, memory_order_relaxed);
        atomic_store_explicit(&counters[i].n, n + 1, memory_order_relaxed);
    }
    return NULL;
}

static void *server_thread(void *arg)
{
    int i = (int)(intptr_t)arg;
    char buf[MSG];
    if (g_mode == M_FUTEX) {
        while (wait_state(&S->slots[i].state, ST_REQ) == ST_REQ) { /* else ST_STOP */
            work_n(work_iters);
            post(&S->slots[i].state, ST_RESP);
        }
        return NULL;
    }
    /* until EOF: the parent closed the client end */
    while (sock_xfer(sock_fd[i][1], buf, 0, g_mode == M_SOCKPOLL) == 1) {
        work_n(work_iters);
        memset(buf, 'a', sizeof buf);
        if (sock_xfer(sock_fd[i][1], buf, 1, 0) != 1) break;
    }
    return NULL;
}

static void child_main(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the parent */
    if (getppid() != parent) _exit(1);
    pthread_t *th = calloc((size_t)g_threads, sizeof *th);
    for (int i = 0; i < g_threads; i++) {
        if (sock_fd) close(sock_fd[i][0]); /* so that the parent's close means EOF */
        if (!th || pthread_create(&th[i], NULL, server_thread, (void *)(intptr_t)i) != 0)
            _exit(1);
    }
    for (uint32_t k = 0; k < 2; k++) { /* CPU-time snapshots: window start, end */
        wait_above(&S->snap_req, k);
        S->child_cpu_us[k] = cpu_us_self();
        post(&S->snap_ack, k + 1);
    }
    for (int i = 0; i < g_threads; i++) pthread_join(th[i], NULL);
    _exit(0);
}

static uint64_t child_cpu_snapshot(uint32_t k)
{
    post(&S->snap_req, k + 1);
    wait_above(&S->snap_ack, k);
    return S->child_cpu_us[k];
}

/* Iterations of work_n() per work_us of thread CPU time: n is doubled until
 * a run takes >= 10 ms, then the best of 7 runs counts, so that preemption
 * by other load does not inflate the estimate. */
static uint64_t calibrate(int work_us)
{
    uint64_t n = 100000, best = UINT64_MAX;
    work_n(2000000); /* let the core clock up */
    for (;; n *= 2) {
        uint64_t t0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
        work_n(n);
        if (ns_of(CLOCK_THREAD_CPUTIME_ID) - t0 >= 10000000ull) break;
    }
    for (int k = 0; k < 7; k++) {
        uint64_t t0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
        work_n(n);
        uint64_t dt = ns_of(CLOCK_THREAD_CPUTIME_ID) - t0;
        if (dt < best) best = dt;
    }
    uint64_t it = (uint64_t)((double)n / (double)best * work_us * 1000.0 + 0.5);
    return it ? it : 1;
}

/* SIGALRM: the watchdog fired.  SIGCHLD: the child died before teardown. */
static void on_signal(int sig)
{
    static const char t[] = "handover: watchdog timeout\n", c[] = "handover: child died\n";
    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        waitpid(child_pid, NULL, 0);
    }
    if ((sig == SIGALRM ? write(2, t, sizeof t - 1) : write(2, c, sizeof c - 1)) < 0) _exit(2);
    _exit(2);
}

static uint64_t sum_counters(void)
{
    uint64_t s = 0;
    for (int i = 0; i < g_threads; i++)
        s += atomic_load_explicit(&counters[i].n, memory_order_relaxed);
    return s;
}

int main(int argc, char **argv)
{
    int calib = argc == 3 && strcmp(argv[1], "calib") == 0;
    if (!calib && argc != 5) {
        fprintf(stderr, "usage: %s inproc|sock|sockpoll|futex THREADS WORK_US DURATION_MS\n"
                        "       %s calib WORK_US\n", argv[0], argv[0]);
        return 2;
    }
    int work_us = atoi(argv[calib ? 2 : 3]);
    const char *e = getenv("WORK_ITERS");
    work_iters = e && *e ? strtoull(e, NULL, 10) : calibrate(work_us);
    if (calib) {
        uint64_t t0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
        for (int k = 0; k < 20; k++) work_n(work_iters);
        printf("work_iters=%llu work_us_measured=%.1f\n", (unsigned long long)work_iters,
               (double)(ns_of(CLOCK_THREAD_CPUTIME_ID) - t0) / 20e3);
        return 0;
    }
    g_mode = -1;
    for (int m = 0; m < M_COUNT; m++)
        if (strcmp(argv[1], mode_names[m]) == 0) g_mode = m;
    g_threads = atoi(argv[2]);
    int dur_ms = atoi(argv[4]);
    if (g_mode < 0 || g_threads < 1 || g_threads > 4096 || work_us < 0 || dur_ms < 1) {
        fprintf(stderr, "handover: bad arguments\n");
        return 2;
    }

    signal(SIGPIPE, SIG_IGN); /* a dead peer shows up as EPIPE */
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_NOCLDSTOP};
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    alarm((unsigned)((WARMUP_MS + dur_ms) / 1000 + 20));
    counters = aligned_alloc(CL, sizeof *counters * (size_t)g_threads);
    pthread_t *th = calloc((size_t)g_threads, sizeof *th);
    if (!counters || !th) die("alloc");
    memset(counters, 0, sizeof *counters * (size_t)g_threads);

    if (g_mode != M_INPROC) {
        size_t sz = sizeof *S + sizeof(struct slot) * (size_t)g_threads;
        S = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (S == MAP_FAILED) die("mmap");
        if (g_mode != M_FUTEX && !(sock_fd = calloc((size_t)g_threads, sizeof *sock_fd)))
            die("alloc");
        for (int i = 0; sock_fd && i < g_threads; i++)
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, sock_fd[i]) != 0) die("socketpair");
        pid_t parent = getpid();
        fflush(NULL);
        if ((child_pid = fork()) < 0) die("fork"); /* before any thread exists */
        if (child_pid == 0) child_main(parent);
        for (int i = 0; sock_fd && i < g_threads; i++) close(sock_fd[i][1]);
    }
    for (int i = 0; i < g_threads; i++)
        if (pthread_create(&th[i], NULL, client_thread, (void *)(intptr_t)i) != 0)
            die("pthread_create");

    /* The op window [ops0, ops1] lies inside the CPU and ctxsw windows. */
    sleep_ms(WARMUP_MS);
    uint64_t cs0 = ctxsw_of(getpid()) + (child_pid ? ctxsw_of(child_pid) : 0);
    uint64_t ccpu0 = child_pid ? child_cpu_snapshot(0) : 0;
    uint64_t pcpu0 = cpu_us_self(), ops0 = sum_counters(), t0 = ns_of(CLOCK_MONOTONIC);
    sleep_ms(dur_ms);
    uint64_t ops1 = sum_counters(), t1 = ns_of(CLOCK_MONOTONIC), pcpu1 = cpu_us_self();
    uint64_t ccpu1 = child_pid ? child_cpu_snapshot(1) : 0;
    uint64_t cs1 = ctxsw_of(getpid()) + (child_pid ? ctxsw_of(child_pid) : 0);

    /* Teardown: the clients finish the call in flight (the servers still
     * answer), then the servers are stopped and the child is reaped. */
    int status = 0;
    atomic_store(&cli_stop, 1);
    for (int i = 0; i < g_threads; i++) pthread_join(th[i], NULL);
    free(th);
    signal(SIGCHLD, SIG_DFL); /* from here on the child is expected to exit */
    if (child_pid) {
        int st;
        for (int i = 0; i < g_threads; i++) {
            if (sock_fd)
                close(sock_fd[i][0]); /* the server reads EOF */
            else
                post(&S->slots[i].state, ST_STOP);
        }
        if (waitpid(child_pid, &st, 0) < 0) die("waitpid");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "handover: child exited abnormally (status 0x%x)\n", st);
            status = 1;
        }
        child_pid = 0;
    }
    alarm(0);
    if (atomic_load(&g_error)) {
        fprintf(stderr, "handover: client I/O error\n");
        status = 1;
    }

    uint64_t ops = ops1 - ops0;
    double cpu_us = (double)(pcpu1 - pcpu0) + (double)(ccpu1 - ccpu0);
    printf("mode=%s threads=%d work_us=%d ops_per_s=%.0f cpu_us_per_op=%.2f ctxsw_per_op=%.3f\n",
           mode_names[g_mode], g_threads, work_us, (double)ops * 1e9 / (double)(t1 - t0),
           ops ? cpu_us / (double)ops : 0.0, ops ? (double)(cs1 - cs0) / (double)ops : 0.0);
    return status;
}
