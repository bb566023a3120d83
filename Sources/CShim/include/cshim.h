#ifndef MERIDIAN_CSHIM_H
#define MERIDIAN_CSHIM_H
/* Wrappers for socket calls and macros Swift's Glibc module does not import
   (recvmmsg, sendmmsg, struct mmsghdr, in6_pktinfo, CMSG_*, accept4, TCP_NODELAY).
   The .c file defines _GNU_SOURCE; this header must not (it breaks fd_set's import).

   Addresses cross this boundary as a family (4 or 6), 16 network-order bytes (IPv4 in
   the first 4) and a host-order port, so Swift never builds or reads a sockaddr. */

#include <stdint.h>
#include <stddef.h>

/* ---- Batched UDP I/O -------------------------------------------------------------
   A batch owns `count` receive slots and `count` send slots, each with its own buffer,
   peer address and control (cmsg) area, all allocated once by cshim_batch_new.
   Ownership: one batch belongs to one thread; nothing in it is thread-safe.
   Receive slot i is valid after cshim_batch_recv returned n > i and until the next
   cshim_batch_recv. Send slot j is filled by cshim_batch_set_reply and consumed by
   cshim_batch_send. */
typedef struct cshim_batch cshim_batch;

/* Returns NULL when memory is exhausted or an argument is out of range. */
cshim_batch *cshim_batch_new(int count, int rx_bufsize, int tx_bufsize);
void cshim_batch_free(cshim_batch *b);
int cshim_batch_count(const cshim_batch *b);

/* recvmmsg(MSG_WAITFORONE): blocks for the first datagram (unless `nonblocking` is
   non-zero: then MSG_DONTWAIT, for a socket poll() reported readable), then takes what is
   queued. Returns the number received (>= 0) or -1 with errno set. EINTR is returned, not
   retried, so the caller can check its stop flag before blocking again. */
int cshim_batch_recv(cshim_batch *b, int fd, int nonblocking);

uint8_t *cshim_batch_rx_buffer(cshim_batch *b, int i);
int cshim_batch_rx_length(const cshim_batch *b, int i);
/* Non-zero when the datagram did not fit the receive buffer (MSG_TRUNC). */
int cshim_batch_rx_truncated(const cshim_batch *b, int i);
/* The sender. Returns the family (4 or 6, 0 if unknown) and fills addr[16] and port. */
int cshim_batch_rx_peer(const cshim_batch *b, int i, uint8_t *addr, uint16_t *port);
/* The local address the datagram was sent to, from IP_PKTINFO / IPV6_PKTINFO.
   Returns the family (4 or 6) or 0 when the socket delivered no such cmsg. */
int cshim_batch_rx_destination(const cshim_batch *b, int i, uint8_t *addr);

/* Receive slot i in one call (the per-datagram path): NULL when the datagram is to be
   dropped (truncated, or a sender of unknown family); else its bytes, with *length, the
   sender's family (4 or 6), its address as two host-order words of the 16 network-order
   bytes above (IPv4 in the high half of *hi, *lo 0) and its port. */
const uint8_t *cshim_batch_rx_slot(const cshim_batch *b, int i, int *length, int *family,
                                   uint64_t *hi, uint64_t *lo, uint16_t *port);

uint8_t *cshim_batch_tx_buffer(cshim_batch *b, int j);
int cshim_batch_tx_capacity(const cshim_batch *b);
/* Bytes from send slot j's buffer to slot j+1's: the capacity rounded up to a cache line, plus
   one line, so the slots' first bytes fall in different cache sets. Slot j's buffer is at
   cshim_batch_tx_buffer(b, 0) + j * cshim_batch_tx_stride(b). */
int cshim_batch_tx_stride(const cshim_batch *b);
/* Prepares send slot j: `length` bytes of its buffer go to the sender of receive slot i,
   from the address that datagram was sent to (so a wildcard-bound socket answers from
   the right source). */
void cshim_batch_set_reply(cshim_batch *b, int j, int i, int length);

/* sendmmsg over send slots [0, n). A datagram the kernel refuses (e.g. EPERM from a
   firewall, ENETUNREACH) is skipped so the rest still go out.
   Returns how many were sent; *first_errno is 0 or the errno of the first failure. */
int cshim_batch_send(cshim_batch *b, int fd, int n, int *first_errno);

/* ---- Plain socket helpers ------------------------------------------------------- */

/* bind() to family 4/6, addr (4 or 16 bytes used), port. Returns 0 or -1 with errno. */
int cshim_bind(int fd, int family, const uint8_t *addr, uint16_t port);
/* The locally bound port, or -1 with errno. */
int cshim_local_port(int fd);
/* accept4(SOCK_NONBLOCK | SOCK_CLOEXEC), retrying EINTR. Returns the new fd or -1 with
   errno; on success fills *family (4 or 6), addr[16] and *port of the client. */
int cshim_accept(int fd, int *family, uint8_t *addr, uint16_t *port);
/* setsockopt(TCP_NODELAY, 1). Returns 0 or -1 with errno. */
int cshim_tcp_nodelay(int fd);
/* Sets receive timeout (SO_RCVTIMEO) in milliseconds. Returns 0 or -1 with errno. */
int cshim_set_rcvtimeo(int fd, int milliseconds);

/* Names the calling thread (shown by top -H, gdb); longer names are cut to 15 bytes. */
void cshim_name_current_thread(const char *name);

/* ---- Child processes (exec health checks) --------------------------------------
   Why C: posix_spawn_file_actions_addclosefrom_np, pipe2, waitid's siginfo and prctl are
   not (usefully) imported by Swift's Glibc module. */

/* pipe2(O_CLOEXEC): both ends close-on-exec from the start, so a child spawned by another
   thread in between never inherits them. Returns 0 or -1 with errno. */
int cshim_pipe_cloexec(int fds[2]);

/* posix_spawn for one health-check command: stdin from /dev/null, stdout and stderr to
   out_fd, every other descriptor closed (closefrom 3), an empty signal mask and default
   dispositions for every signal, and its own process group (pgid = pid), so the whole group
   can be killed with kill(-pid, SIGKILL). `path` is used as is (no PATH search); `envp` is
   the complete environment. Returns 0 and fills *pid, or an errno. */
int cshim_spawn_check(int *pid, const char *path, char *const argv[], char *const envp[], int out_fd);

/* Whether child `pid` has exited, without reaping it (waitid WEXITED|WNOHANG|WNOWAIT): a
   zombie keeps its pid, so its process group id cannot be reused while we kill the group.
   Returns 1 when exited, 0 when still running, -1 with errno on error (ECHILD). */
int cshim_child_exited(int pid);

/* prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to this process
   instead of init, so it can kill and reap them. Returns 0 or -1 with errno. */
int cshim_set_child_subreaper(void);
/* ---- Private copies of input files ----------------------------------------------
   Copies `size` bytes read from `src` (from its current offset) into a new anonymous
   memory file (memfd_create, MFD_CLOEXEC | MFD_ALLOW_SEALING), then seals it against
   writes, shrinking and growing (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
   so a mapping of it can never lose its pages: nobody, not even this process, can change
   the bytes. Used for MaxMind databases, which libmaxminddb maps (a file truncated under a
   shared mapping raises SIGBUS on the next lookup).
   Returns the memfd, -1 with errno set on a system error, or -2 when `src` ended before
   `size` bytes or had more (it changed while being copied). */
int cshim_sealed_copy(int src, const char *name, size_t size);

/* ---- Relaxed 64-bit atomics on shared tables --------------------------------------
   For lock-free tables shared by worker threads (response rate limiting), where each slot
   is one packed 64-bit word. Static inline, so Swift inlines them. */
static inline uint64_t cshim_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline int cshim_cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}
/* Adds v to a counter that only the calling thread writes: a relaxed load and a relaxed
   store, so no locked instruction on the query path, while readers on other threads
   (metrics scrapes, using cshim_load64) never see a torn value. Not for shared writers. */
static inline void cshim_add64(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

/* ---- Prefetch -----------------------------------------------------------------------
   Asks for the cache line at `p` without waiting for it (a hint: never faults). For hash
   tables larger than the caches filled at load time, so the miss of a key some steps ahead
   overlaps the work on the keys before it. Static inline, so Swift inlines it. */
static inline void cshim_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/* ---- Memory ---------------------------------------------------------------------------
   glibc's malloc_trim(0): returns the free memory of every arena to the system (Swift's Glibc
   module does not export <malloc.h>). Returns 1 when some was released. Called after a
   reload has let go of the old snapshot, and after compiling geo maps (large intermediate
   tables). */
int cshim_malloc_trim(void);

/* Limits glibc to `n` malloc arenas (mallopt M_ARENA_MAX), unless the environment already
   sets MALLOC_ARENA_MAX (the operator's choice wins). Called at the start of `serve`, before
   other threads exist: every reload parses on a fresh thread, and with one arena per thread
   (up to 8 per core) the freed memory of earlier reloads stayed stranded in arenas the next
   reload did not use, so resident memory wandered by about 15% from reload to reload.
   `serve` asks for one arena: two still let 100,000 prefixes creep to 1.19x over ten
   reloads, one kept them at 1.00x, at no measured cost to the health loop (see
   Benchmarks/config-scale/RESULTS.md). Returns 1 when the limit was set. */
int cshim_limit_malloc_arenas(int n);

/* ---- Scheduling ------------------------------------------------------------------------
   Background work (a reload's load, freeing a replaced snapshot) runs under SCHED_IDLE: a
   waking query worker preempts it at once, where a nice value only shrinks its share.

   The calling thread's kernel thread id. */
int cshim_gettid(void);

/* Puts thread `tid` (0: the calling thread) under SCHED_IDLE when `idle` is nonzero, else
   back under SCHED_OTHER at its nice value. Returns 0, or -1 with errno set; leaving
   SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that allows the thread's nice value
   (EPERM otherwise). Threads it starts from then on get SCHED_OTHER (SCHED_RESET_ON_FORK). */
int cshim_sched_idle(int tid, int idle);

/* CPU time thread `tid` of this process has used, in nanoseconds; -1 when it is gone. */
int64_t cshim_thread_cpu_ns(int tid);

/* Fixes glibc's mmap threshold at `bytes` (mallopt M_MMAP_THRESHOLD), unless the environment
   sets MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES. By default glibc raises the threshold each
   time a mapped block is freed (up to 32 MiB), so after the first large array of a zone load
   is freed the next ones come from the heap, and freed there they stay resident: a
   1M-record zone then peaked 20 MiB higher and kept it. With a fixed threshold every block
   of at least `bytes` is its own mapping, returned to the system when freed. Called at the
   start of `serve`. Returns 1 when the threshold was set. */
int cshim_fix_mmap_threshold(int bytes);

#endif
