#define _GNU_SOURCE
#include "cshim.h"

#include <errno.h>
#include <stdlib.h>
#include <endian.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

/* Room for one in6_pktinfo cmsg, the larger of the two we receive or send. */
#define CSHIM_CONTROL_SIZE 64

struct cshim_batch {
    int count;
    int rx_bufsize;
    int tx_bufsize;
    size_t rx_stride;                 /* distance between two slots' buffers, see stride_for */
    size_t tx_stride;
    uint8_t *rx_data;                 /* count * rx_stride */
    uint8_t *tx_data;                 /* count * tx_stride */
    struct mmsghdr *rx_msgs;
    struct mmsghdr *tx_msgs;
    struct iovec *rx_iov;
    struct iovec *tx_iov;
    struct sockaddr_storage *rx_names;
    struct sockaddr_storage *tx_names;
    uint8_t *rx_control;              /* count * CSHIM_CONTROL_SIZE */
    uint8_t *tx_control;
};

/* Slot buffers are a whole number of cache lines plus one line apart. With a stride of
   exactly 4096 (or about 65536) every slot's first bytes, where the DNS header and question
   are read and written, would fall in the same cache set, and 32 slots overflow the 8 ways of
   L1 and L2; shifted by one line per slot they use 32 different sets. */
static size_t stride_for(int bufsize) {
    return (((size_t)bufsize + 63) / 64) * 64 + 64;
}

cshim_batch *cshim_batch_new(int count, int rx_bufsize, int tx_bufsize) {
    if (count < 1 || count > 1024 || rx_bufsize < 1 || tx_bufsize < 1) return NULL;
    cshim_batch *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->count = count;
    b->rx_bufsize = rx_bufsize;
    b->tx_bufsize = tx_bufsize;
    size_t n = (size_t)count;
    b->rx_stride = stride_for(rx_bufsize);
    b->tx_stride = stride_for(tx_bufsize);
    b->rx_data = malloc(n * b->rx_stride);
    b->tx_data = malloc(n * b->tx_stride);
    b->rx_msgs = calloc(n, sizeof(struct mmsghdr));
    b->tx_msgs = calloc(n, sizeof(struct mmsghdr));
    b->rx_iov = calloc(n, sizeof(struct iovec));
    b->tx_iov = calloc(n, sizeof(struct iovec));
    b->rx_names = calloc(n, sizeof(struct sockaddr_storage));
    b->tx_names = calloc(n, sizeof(struct sockaddr_storage));
    b->rx_control = calloc(n, CSHIM_CONTROL_SIZE);
    b->tx_control = calloc(n, CSHIM_CONTROL_SIZE);
    if (!b->rx_data || !b->tx_data || !b->rx_msgs || !b->tx_msgs || !b->rx_iov || !b->tx_iov ||
        !b->rx_names || !b->tx_names || !b->rx_control || !b->tx_control) {
        cshim_batch_free(b);
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        b->rx_iov[i].iov_base = b->rx_data + (size_t)i * b->rx_stride;
        b->rx_iov[i].iov_len = (size_t)rx_bufsize;
        struct msghdr *h = &b->rx_msgs[i].msg_hdr;
        h->msg_name = &b->rx_names[i];
        h->msg_iov = &b->rx_iov[i];
        h->msg_iovlen = 1;
        h->msg_control = b->rx_control + (size_t)i * CSHIM_CONTROL_SIZE;

        b->tx_iov[i].iov_base = b->tx_data + (size_t)i * b->tx_stride;
        struct msghdr *t = &b->tx_msgs[i].msg_hdr;
        t->msg_name = &b->tx_names[i];
        t->msg_iov = &b->tx_iov[i];
        t->msg_iovlen = 1;
        t->msg_control = b->tx_control + (size_t)i * CSHIM_CONTROL_SIZE;
    }
    return b;
}

void cshim_batch_free(cshim_batch *b) {
    if (!b) return;
    free(b->rx_data); free(b->tx_data);
    free(b->rx_msgs); free(b->tx_msgs);
    free(b->rx_iov); free(b->tx_iov);
    free(b->rx_names); free(b->tx_names);
    free(b->rx_control); free(b->tx_control);
    free(b);
}

int cshim_batch_count(const cshim_batch *b) { return b->count; }

int cshim_batch_recv(cshim_batch *b, int fd, int nonblocking) {
    /* The kernel overwrites name and control lengths and flags on every call. */
    for (int i = 0; i < b->count; i++) {
        struct msghdr *h = &b->rx_msgs[i].msg_hdr;
        h->msg_namelen = sizeof(struct sockaddr_storage);
        h->msg_controllen = CSHIM_CONTROL_SIZE;
        h->msg_flags = 0;
        b->rx_msgs[i].msg_len = 0;
    }
    /* recvmmsg's timeout argument is only checked between datagrams; SO_RCVTIMEO is
       what bounds the wait, so pass NULL here. */
    int flags = MSG_WAITFORONE | (nonblocking ? MSG_DONTWAIT : 0);
    return recvmmsg(fd, b->rx_msgs, (unsigned int)b->count, flags, NULL);
}

uint8_t *cshim_batch_rx_buffer(cshim_batch *b, int i) {
    return b->rx_data + (size_t)i * b->rx_stride;
}

int cshim_batch_rx_length(const cshim_batch *b, int i) { return (int)b->rx_msgs[i].msg_len; }

int cshim_batch_rx_truncated(const cshim_batch *b, int i) {
    return (b->rx_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
}

static int sockaddr_to_bytes(const struct sockaddr_storage *ss, socklen_t len, uint8_t *addr, uint16_t *port) {
    if (ss->ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        memset(addr, 0, 16);
        memcpy(addr, &s4->sin_addr, 4);
        if (port) *port = ntohs(s4->sin_port);
        return 4;
    }
    if (ss->ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        memcpy(addr, &s6->sin6_addr, 16);
        if (port) *port = ntohs(s6->sin6_port);
        return 6;
    }
    return 0;
}

int cshim_batch_rx_peer(const cshim_batch *b, int i, uint8_t *addr, uint16_t *port) {
    const struct msghdr *h = &b->rx_msgs[i].msg_hdr;
    return sockaddr_to_bytes(&b->rx_names[i], h->msg_namelen, addr, port);
}

const uint8_t *cshim_batch_rx_slot(const cshim_batch *b, int i, int *length, int *family,
                                   uint64_t *hi, uint64_t *lo, uint16_t *port) {
    const struct msghdr *h = &b->rx_msgs[i].msg_hdr;
    if (h->msg_flags & MSG_TRUNC) return NULL;
    uint8_t addr[16];
    int f = sockaddr_to_bytes(&b->rx_names[i], h->msg_namelen, addr, port);
    if (f == 0) return NULL;
    uint64_t w[2];
    memcpy(w, addr, sizeof(w));
    *hi = be64toh(w[0]);
    *lo = be64toh(w[1]);
    *family = f;
    *length = (int)b->rx_msgs[i].msg_len;
    return b->rx_data + (size_t)i * b->rx_stride;
}

/* Finds the IP_PKTINFO / IPV6_PKTINFO cmsg of receive slot i, or NULL. */
static struct cmsghdr *find_pktinfo(const cshim_batch *b, int i) {
    struct msghdr *h = (struct msghdr *)&b->rx_msgs[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) return c;
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) return c;
    }
    return NULL;
}

int cshim_batch_rx_destination(const cshim_batch *b, int i, uint8_t *addr) {
    struct cmsghdr *c = find_pktinfo(b, i);
    if (!c) return 0;
    memset(addr, 0, 16);
    if (c->cmsg_level == IPPROTO_IP) {
        struct in_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof(pi));
        memcpy(addr, &pi.ipi_addr, 4);
        return 4;
    }
    struct in6_pktinfo pi6;
    memcpy(&pi6, CMSG_DATA(c), sizeof(pi6));
    memcpy(addr, &pi6.ipi6_addr, 16);
    return 6;
}

uint8_t *cshim_batch_tx_buffer(cshim_batch *b, int j) {
    return b->tx_data + (size_t)j * b->tx_stride;
}

int cshim_batch_tx_capacity(const cshim_batch *b) { return b->tx_bufsize; }

int cshim_batch_tx_stride(const cshim_batch *b) { return (int)b->tx_stride; }

void cshim_batch_set_reply(cshim_batch *b, int j, int i, int length) {
    struct msghdr *t = &b->tx_msgs[j].msg_hdr;
    const struct msghdr *r = &b->rx_msgs[i].msg_hdr;
    memcpy(&b->tx_names[j], &b->rx_names[i], r->msg_namelen);
    t->msg_namelen = r->msg_namelen;
    b->tx_iov[j].iov_len = (size_t)length;
    t->msg_flags = 0;

    struct cmsghdr *in = find_pktinfo(b, i);
    if (!in) {
        t->msg_controllen = 0;
        return;
    }
    uint8_t *control = b->tx_control + (size_t)j * CSHIM_CONTROL_SIZE;
    /* Only the cmsg written below is sent (msg_controllen): clear that, not the whole slot. */
    memset(control, 0, in->cmsg_level == IPPROTO_IP ? CMSG_SPACE(sizeof(struct in_pktinfo))
                                                    : CMSG_SPACE(sizeof(struct in6_pktinfo)));
    t->msg_control = control;
    if (in->cmsg_level == IPPROTO_IP) {
        /* Source = the address the query was sent to; ifindex 0 lets routing pick the
           interface (ip(7): ipi_spec_dst is the local source for sendmsg). */
        struct in_pktinfo pi;
        memcpy(&pi, CMSG_DATA(in), sizeof(pi));
        pi.ipi_spec_dst = pi.ipi_addr;
        pi.ipi_ifindex = 0;
        t->msg_controllen = CMSG_SPACE(sizeof(pi));
        struct cmsghdr *c = CMSG_FIRSTHDR(t);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    } else {
        /* Keep the interface index: a link-local destination needs it (RFC 3542 6.1). */
        struct in6_pktinfo pi6;
        memcpy(&pi6, CMSG_DATA(in), sizeof(pi6));
        t->msg_controllen = CMSG_SPACE(sizeof(pi6));
        struct cmsghdr *c = CMSG_FIRSTHDR(t);
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi6));
        memcpy(CMSG_DATA(c), &pi6, sizeof(pi6));
    }
}

int cshim_batch_send(cshim_batch *b, int fd, int n, int *first_errno) {
    int sent = 0, i = 0;
    *first_errno = 0;
    if (n > b->count) n = b->count;
    /* Bounded: every pass either sends at least one datagram or skips one. */
    while (i < n) {
        int r = sendmmsg(fd, b->tx_msgs + i, (unsigned int)(n - i), 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (*first_errno == 0) *first_errno = errno;
            i += 1;
            continue;
        }
        if (r == 0) {
            i += 1;
            continue;
        }
        sent += r;
        i += r;
    }
    return sent;
}

int cshim_bind(int fd, int family, const uint8_t *addr, uint16_t port) {
    if (family == 4) {
        struct sockaddr_in s4;
        memset(&s4, 0, sizeof(s4));
        s4.sin_family = AF_INET;
        s4.sin_port = htons(port);
        memcpy(&s4.sin_addr, addr, 4);
        return bind(fd, (struct sockaddr *)&s4, sizeof(s4));
    }
    if (family == 6) {
        struct sockaddr_in6 s6;
        memset(&s6, 0, sizeof(s6));
        s6.sin6_family = AF_INET6;
        s6.sin6_port = htons(port);
        memcpy(&s6.sin6_addr, addr, 16);
        return bind(fd, (struct sockaddr *)&s6, sizeof(s6));
    }
    errno = EAFNOSUPPORT;
    return -1;
}

int cshim_local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    uint8_t addr[16];
    uint16_t port = 0;
    if (sockaddr_to_bytes(&ss, len, addr, &port) == 0) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    return (int)port;
}

int cshim_accept(int fd, int *family, uint8_t *addr, uint16_t *port) {
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        *family = sockaddr_to_bytes(&ss, len, addr, port);
        return c;
    }
}

int cshim_tcp_nodelay(int fd) {
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int cshim_set_rcvtimeo(int fd, int milliseconds) {
    struct timeval tv;
    tv.tv_sec = milliseconds / 1000;
    tv.tv_usec = (milliseconds % 1000) * 1000;
    return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

void cshim_name_current_thread(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof(cut) - 1);
    cut[sizeof(cut) - 1] = 0;
    (void)pthread_setname_np(pthread_self(), cut);
}

int cshim_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cshim_spawn_check(int *pid, const char *path, char *const argv[], char *const envp[], int out_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) { posix_spawn_file_actions_destroy(&actions); return rc; }
    if (rc == 0) rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
    /* Nothing but 0, 1 and 2 crosses into the check: not the DNS sockets, not another
       check's pipe (glibc >= 2.34). */
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    /* The server blocks SIGHUP/SIGTERM/SIGINT/SIGUSR1 for its sigwait thread and ignores
       SIGPIPE; a check must start with neither (glibc skips SIGKILL/SIGSTOP itself). */
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0) rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    if (rc == 0) {
        pid_t child = 0;
        rc = posix_spawn(&child, path, &actions, &attr, argv, envp);
        if (rc == 0) *pid = (int)child;
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return rc;
}

int cshim_child_exited(int pid) {
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof(info));
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        return info.si_pid != 0 ? 1 : 0;
    }
}

int cshim_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
/* ---- Private copies of input files ---------------------------------------------- */

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int cshim_sealed_copy(int src, const char *name, size_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    enum { chunk = 1 << 20 };
    char *buf = malloc(chunk);
    if (!buf) { close(fd); errno = ENOMEM; return -1; }
    size_t done = 0;
    int result = fd;
    while (done < size) {
        size_t want = size - done < chunk ? size - done : chunk;
        ssize_t n = read(src, buf, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { result = -1; break; }
        if (n == 0) { result = -2; break; }
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t w = write(fd, buf + off, (size_t)n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { result = -1; break; }
            off += (size_t)w;
        }
        if (result < 0) break;
        done += (size_t)n;
    }
    if (result >= 0) {
        /* One more byte means the file grew after the caller's fstat. */
        ssize_t n;
        do { n = read(src, buf, 1); } while (n < 0 && errno == EINTR);
        if (n > 0) result = -2;
    }
    free(buf);
    if (result >= 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) result = -1;
    if (result < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return result;
}

int cshim_malloc_trim(void) { return malloc_trim(0); }
int cshim_limit_malloc_arenas(int n) {
    if (getenv("MALLOC_ARENA_MAX") != NULL) return 0;
    return mallopt(M_ARENA_MAX, n);
}

int cshim_gettid(void) { return (int)gettid(); }

int cshim_sched_idle(int tid, int idle) {
    struct sched_param p = { .sched_priority = 0 };
    /* SCHED_RESET_ON_FORK: threads the idle work starts get SCHED_OTHER, not an unwatched
       SCHED_IDLE. Kept when going back (only CAP_SYS_NICE may clear it). */
    return sched_setscheduler(tid, (idle ? SCHED_IDLE : SCHED_OTHER) | SCHED_RESET_ON_FORK, &p);
}

int64_t cshim_thread_cpu_ns(int tid) {
    /* The kernel's per-thread CPU clock id (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)), the
       one pthread_getcpuclockid returns, built from the tid so a thread that is gone only
       makes clock_gettime fail. */
    clockid_t id = (clockid_t)((~(unsigned)tid) << 3) | 6;
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0) return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int cshim_fix_mmap_threshold(int bytes) {
    if (getenv("MALLOC_MMAP_THRESHOLD_") != NULL || getenv("GLIBC_TUNABLES") != NULL) return 0;
    return mallopt(M_MMAP_THRESHOLD, bytes);
}
