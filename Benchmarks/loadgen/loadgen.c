/*
 * loadgen: a batched DNS-over-UDP load generator for the Meridian benchmark harness.
 *
 * Why it exists: dnsperf saturates its own core (170-195k qps here) before the fast
 * servers saturate theirs, so it cannot tell them apart. This generator moves queries
 * with sendmmsg/recvmmsg in batches over several sockets (several source ports, so
 * SO_REUSEPORT servers could spread them) and keeps a bounded window of outstanding
 * queries, so the server's core, not the client's, is the limit.
 *
 * Two modes:
 *   saturating (default): keep `-w` queries outstanding at all times;
 *   fixed rate (-Q QPS):  send at the given offered rate, for latency percentiles below
 *                         saturation (the window still bounds what is outstanding).
 * and two transports:
 *   UDP (default):        `-c` connected sockets, sendmmsg/recvmmsg in batches of `-b`;
 *   TCP (-T N):           `-c` connections at a time, each carrying N queries (RFC 7766:
 *                         2-byte length prefix, pipelined up to `-w`/`-c` in flight on a
 *                         connection), then closed by the client and replaced by a new one.
 *
 * Queries come from a text file, one per line:  NAME TYPE [CLIENT-SUBNET]
 *   www.example.com A
 *   geo.example.com A 203.0.113.0/24      <- this query carries its own ECS option
 * TYPE is a mnemonic (A, AAAA, MX, ...) or TYPEnnn. The file is read once, encoded to
 * wire form, and cycled. Lines starting with ';' or '#' are skipped.
 *
 * Every run is bounded by a query count (-n) AND a time limit (-l); only loopback
 * targets are accepted. Latency comes from per-batch send/receive timestamps
 * (CLOCK_MONOTONIC) matched by query ID and socket; a query unanswered after -t ms is
 * counted lost. The last line of output is machine-readable key=value pairs.
 *
 * Generator stalls: the loop notes every gap longer than -S µs (default 500) between two
 * of its own clock readings (the generator was descheduled, or a syscall of its own took
 * that long: time on the client's side, not the server's). An answer to a query that was
 * outstanding when such a stall ended had that stall added to its measured latency; it
 * is counted in `stalled_answers`, and `p99_clean_us` is the p99 of the other answers.
 * `stalls`, `stall_ms` and `max_stall_us` say how much the generator itself lost;
 * `wait_ms` is the time it spent runnable but waiting for its CPU (/proc/self/schedstat)
 * and `nivcsw` how often it was preempted (getrusage).
 *
 * Catch-up (-Q): after a stall the generator is behind its schedule. By default it sends
 * the backlog at once, in batches (a burst the server then queues); with -K N it sends at
 * most N queries behind schedule and skips the rest (`skipped`), so a stall of the
 * generator does not become a burst at the server.
 *
 * Waiting (-Q): by default the generator spins between sends (poll with no timeout), so it
 * takes its whole CPU. Spinning under SCHED_FIFO runs into the kernel's real-time
 * throttling (sched_rt_runtime_us: 950 ms of every 1 s), which stops it for ~50 ms once a
 * second; under SCHED_OTHER any other job on its CPU shares it. With -Z it sleeps in ppoll
 * until the next send is due or an answer arrives (timer slack set to 1 ns), so it uses a
 * fraction of its CPU and, under SCHED_FIFO, is woken ahead of everything else there.
 *
 * Build: gcc -O2 -Wall -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKETS 64
#define MAX_BATCH 256
#define MAX_QUERY 512
#define MAX_RESPONSE 4096
#define ID_SPACE 65536
/* Latency histogram: 100 ns buckets up to 1 s; anything slower lands in the last one. */
#define HIST_NS 100
#define HIST_BUCKETS 10000000

struct query {
    uint32_t offset;
    uint16_t length;
};

struct slot {
    uint64_t sent_ns;
    uint32_t gen;  /* TCP: which connection on that socket index the query went out on */
    uint8_t in_use;
    uint8_t sock;
};

static uint8_t *query_data;
static struct query *queries;
static size_t query_count;

static struct slot slots[ID_SPACE];
/* Send order of IDs, so timeouts are found by looking at the oldest only. */
static uint16_t fifo[ID_SPACE];
static uint32_t fifo_head, fifo_tail;
static uint64_t *hist;
/* The answers not touched by a generator stall (see above). */
static uint64_t *hist_clean;
static uint64_t answered_clean;

/* Generator stalls: gaps between the loop's clock readings longer than stall_ns. */
static uint64_t skipped, max_behind;
static int sleep_between = 0;
static uint64_t stall_ns = 500000, last_tick, last_stall_end, stalls, stall_total_ns, stall_max_ns;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    /* Every clock reading of the run goes through here, so a long gap since the previous
     * one is time the generator was not running its loop. */
    if (last_tick && t - last_tick > stall_ns) {
        uint64_t gap = t - last_tick;
        stalls++;
        stall_total_ns += gap;
        if (gap > stall_max_ns) stall_max_ns = gap;
        last_stall_end = t;
    }
    last_tick = t;
    return t;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static const struct { const char *name; uint16_t code; } type_names[] = {
    {"A", 1}, {"NS", 2}, {"CNAME", 5}, {"SOA", 6}, {"PTR", 12}, {"MX", 15}, {"TXT", 16},
    {"AAAA", 28}, {"SRV", 33}, {"NAPTR", 35}, {"DS", 43}, {"DNSKEY", 48}, {"SVCB", 64},
    {"HTTPS", 65}, {"CAA", 257}, {"ANY", 255},
};

static int parse_type(const char *s, uint16_t *out) {
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (strcasecmp(s, type_names[i].name) == 0) { *out = type_names[i].code; return 0; }
    }
    if (strncasecmp(s, "TYPE", 4) == 0) {
        char *end;
        long v = strtol(s + 4, &end, 10);
        if (*end == 0 && v > 0 && v < 65536) { *out = (uint16_t)v; return 0; }
    }
    return -1;
}

/* Encodes NAME into wire labels at p (at most 255 bytes); returns the length or -1. */
static int encode_name(const char *name, uint8_t *p) {
    int len = 0;
    const char *s = name;
    if (strcmp(name, ".") == 0) { p[0] = 0; return 1; }
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t l = dot ? (size_t)(dot - s) : strlen(s);
        if (l == 0 || l > 63 || len + 1 + (int)l > 254) return -1;
        p[len++] = (uint8_t)l;
        memcpy(p + len, s, l);
        len += (int)l;
        if (!dot) break;
        s = dot + 1;
    }
    p[len++] = 0;
    return len;
}

/* Builds one query: header, question, and an OPT RR (RFC 6891) with an optional Client
 * Subnet option (RFC 7871 section 6). The ID is patched per send. */
/* -D: set the DO bit (RFC 3225) in the OPT record, for signed-answer benchmarks. */
static int dnssec_ok = 0;

static int build_query(const char *name, uint16_t type, const char *ecs, int edns, uint8_t *out) {
    memset(out, 0, 12);
    out[5] = 1; /* QDCOUNT = 1, RD clear: authoritative servers are the target */
    int n = encode_name(name, out + 12);
    if (n < 0) return -1;
    int p = 12 + n;
    out[p++] = (uint8_t)(type >> 8); out[p++] = (uint8_t)type;
    out[p++] = 0; out[p++] = 1; /* class IN */
    if (!edns && !ecs) return p;
    out[11] = 1; /* ARCOUNT = 1 */
    out[p++] = 0;                 /* root owner */
    out[p++] = 0; out[p++] = 41;  /* TYPE OPT */
    out[p++] = 1232 >> 8; out[p++] = 1232 & 0xff; /* UDP payload size */
    out[p++] = 0; out[p++] = 0; out[p++] = dnssec_ok ? 0x80 : 0; out[p++] = 0; /* ext rcode, version, flags (DO) */
    if (!ecs) { out[p++] = 0; out[p++] = 0; return p; }
    char addr[64];
    const char *slash = strchr(ecs, '/');
    if (!slash || (size_t)(slash - ecs) >= sizeof addr) return -1;
    memcpy(addr, ecs, (size_t)(slash - ecs));
    addr[slash - ecs] = 0;
    int prefix = atoi(slash + 1);
    uint8_t bytes[16];
    int family;
    if (inet_pton(AF_INET, addr, bytes) == 1) { family = 1; if (prefix < 0 || prefix > 32) return -1; }
    else if (inet_pton(AF_INET6, addr, bytes) == 1) { family = 2; if (prefix < 0 || prefix > 128) return -1; }
    else return -1;
    int addr_len = (prefix + 7) / 8;
    int opt_len = 4 + addr_len;
    out[p++] = 0; out[p++] = (uint8_t)(4 + opt_len); /* RDLENGTH */
    out[p++] = 0; out[p++] = 8;                      /* OPTION-CODE 8: Client Subnet */
    out[p++] = 0; out[p++] = (uint8_t)opt_len;
    out[p++] = 0; out[p++] = (uint8_t)family;
    out[p++] = (uint8_t)prefix; out[p++] = 0;        /* source prefix, scope 0 */
    memcpy(out + p, bytes, (size_t)addr_len);
    /* RFC 7871 section 6: bits past the source prefix must be zero. */
    if (prefix % 8) out[p + addr_len - 1] &= (uint8_t)(0xff << (8 - prefix % 8));
    p += addr_len;
    return p;
}

static void load_queries(const char *path, int edns) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(2); }
    size_t cap = 1024, data_cap = 1 << 20, data_len = 0;
    queries = malloc(cap * sizeof *queries);
    query_data = malloc(data_cap);
    if (!queries || !query_data) die("out of memory");
    char line[1024];
    unsigned long lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char name[300], type[32], ecs[80];
        if (line[0] == ';' || line[0] == '#') continue;
        int fields = sscanf(line, "%299s %31s %79s", name, type, ecs);
        if (fields < 2) continue;
        uint16_t t;
        if (parse_type(type, &t) != 0) { fprintf(stderr, "%s:%lu: unknown type %s\n", path, lineno, type); exit(2); }
        if (data_len + MAX_QUERY > data_cap) {
            data_cap *= 2;
            query_data = realloc(query_data, data_cap);
            if (!query_data) die("out of memory");
        }
        int n = build_query(name, t, fields >= 3 ? ecs : NULL, edns, query_data + data_len);
        if (n < 0) { fprintf(stderr, "%s:%lu: bad query line\n", path, lineno); exit(2); }
        if (query_count == cap) {
            cap *= 2;
            queries = realloc(queries, cap * sizeof *queries);
            if (!queries) die("out of memory");
        }
        queries[query_count].offset = (uint32_t)data_len;
        queries[query_count].length = (uint16_t)n;
        query_count++;
        data_len += (size_t)n;
    }
    fclose(f);
    if (query_count == 0) die("no queries in the file");
}

static uint64_t percentile(const uint64_t *h, uint64_t total, double p) {
    if (total == 0) return 0;
    uint64_t rank = (uint64_t)(p * (double)total);
    if (rank >= total) rank = total - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen > rank) return (uint64_t)i * HIST_NS + HIST_NS / 2;
    }
    return (uint64_t)HIST_BUCKETS * HIST_NS;
}

static void usage(void) {
    fprintf(stderr,
        "usage: loadgen -d QUERYFILE [-s 127.0.0.1] -p PORT [-n COUNT] [-l SECONDS]\n"
        "               [-w WINDOW] [-c SOCKETS] [-b BATCH] [-Q QPS] [-t TIMEOUT_MS] [-E] [-T N] [-S US]\n"
        "  -n  stop after this many queries sent (default 100000000)\n"
        "  -l  stop sending after this many seconds (default 10)\n"
        "  -w  outstanding queries at most (default 200)\n"
        "  -c  UDP sockets, i.e. source ports; with -T, TCP connections at a time (default 8)\n"
        "  -b  datagrams per sendmmsg/recvmmsg (default 32)\n"
        "  -Q  fixed offered rate in queries per second (default: saturate the window)\n"
        "  -t  a query unanswered after this many ms is lost (default 1000)\n"
        "  -E  no EDNS OPT record on queries without a client subnet\n"
        "  -D  set the DO bit (ask for DNSSEC signatures)\n"
        "  -T  TCP: N queries per connection, then a new connection\n"
        "  -Z  fixed rate: sleep until the next send is due instead of spinning (UDP)\n"
        "  -K  fixed rate: send at most N queries behind schedule, skip the rest (default: all)\n"
        "  -S  a gap longer than this many µs in the generator's own loop is a stall (default 500)\n");
    exit(2);
}

/* What both transports count; printed at the end. */
static struct {
    uint64_t sent, answered, lost, late, bad, send_errors, truncated, rcodes[16];
    uint64_t outstanding, max_outstanding, last_answer, send_end;
} st;

/* Per socket index: queries in flight on it and its connection generation (TCP). */
static uint32_t sock_outstanding[MAX_SOCKETS], sock_gen[MAX_SOCKETS];

static size_t next_query;
static uint16_t next_id;

/* Copies the next query into out with a fresh ID and reserves the ID; returns the length. */
static int take_query(uint8_t *out, uint16_t *id_out) {
    /* IDs in flight never repeat: the window is far below the ID space. */
    while (slots[next_id].in_use) next_id++;
    const struct query *q = &queries[next_query];
    next_query = (next_query + 1) % query_count;
    memcpy(out, query_data + q->offset, q->length);
    out[0] = (uint8_t)(next_id >> 8);
    out[1] = (uint8_t)next_id;
    slots[next_id].in_use = 1; /* reserved; stamped by mark_sent */
    *id_out = next_id++;
    return q->length;
}

static void mark_sent(uint16_t id, int sock, uint64_t t) {
    slots[id].sent_ns = t;
    slots[id].sock = (uint8_t)sock;
    slots[id].gen = sock_gen[sock];
    fifo[fifo_tail++ % ID_SPACE] = id;
    st.sent++;
    st.outstanding++;
    sock_outstanding[sock]++;
    if (st.outstanding > st.max_outstanding) st.max_outstanding = st.outstanding;
}

/* One response that arrived on socket index `sock` at time t. */
static void take_answer(const uint8_t *b, unsigned len, int sock, uint64_t t) {
    if (len < 12 || !(b[2] & 0x80)) { st.bad++; return; }
    uint16_t id = (uint16_t)(b[0] << 8 | b[1]);
    struct slot *sl = &slots[id];
    if (!sl->in_use || sl->sock != sock || sl->gen != sock_gen[sock]) { st.late++; return; }
    sl->in_use = 0;
    st.outstanding--;
    sock_outstanding[sock]--;
    st.answered++;
    st.rcodes[b[3] & 0x0f]++;
    if (b[2] & 0x02) st.truncated++;
    uint64_t lat = (t - sl->sent_ns) / HIST_NS;
    if (lat >= HIST_BUCKETS) lat = HIST_BUCKETS - 1;
    hist[lat]++;
    if (last_stall_end <= sl->sent_ns) {
        hist_clean[lat]++;
        answered_clean++;
    }
    st.last_answer = t;
}

/* Expires the oldest unanswered queries. */
static void expire(uint64_t now, uint64_t timeout_ns) {
    while (fifo_head != fifo_tail) {
        uint16_t id = fifo[fifo_head % ID_SPACE];
        struct slot *sl = &slots[id];
        if (sl->in_use && sl->sent_ns + timeout_ns > now) break;
        if (sl->in_use) {
            sl->in_use = 0;
            st.outstanding--;
            st.lost++;
            if (sl->gen == sock_gen[sl->sock]) sock_outstanding[sl->sock]--;
        }
        fifo_head++;
    }
}

/* How many queries may go out now: window, offered rate, count limit and batch. */
static uint64_t room_now(uint64_t now, uint64_t start, uint64_t window, double rate,
                         uint64_t max_queries, uint64_t batch) {
    uint64_t room = window > st.outstanding ? window - st.outstanding : 0;
    if (rate > 0) {
        uint64_t due = (uint64_t)((double)(now - start) * rate / 1e9) + 1 - skipped;
        if (max_behind && due > st.sent + max_behind) {
            skipped += due - st.sent - max_behind;
            due = st.sent + max_behind;
        }
        uint64_t allowed = due > st.sent ? due - st.sent : 0;
        if (allowed < room) room = allowed;
    }
    if (room > max_queries - st.sent) room = max_queries - st.sent;
    if (room > batch) room = batch;
    return room;
}

struct limits {
    uint64_t start, send_deadline, hard_deadline, timeout_ns, max_queries;
    double rate;
    int window, nsock, batch;
};

/* 1 while sending, 0 while draining the answers still due, -1 when the run is over. */
static int phase(const struct limits *lim, uint64_t now) {
    int sending = st.sent < lim->max_queries && now < lim->send_deadline;
    if (!sending && st.send_end == 0) st.send_end = now;
    if ((!sending && st.outstanding == 0) || now >= lim->hard_deadline) return -1;
    return sending;
}

static void run_udp(const struct limits *lim, const struct sockaddr_storage *dst, socklen_t dst_len) {
    int socks[MAX_SOCKETS];
    struct pollfd pfd[MAX_SOCKETS];
    int nsock = lim->nsock, batch = lim->batch;
    for (int i = 0; i < nsock; i++) {
        socks[i] = socket(dst->ss_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (socks[i] < 0) { perror("socket"); exit(2); }
        int sz = 4 << 20;
        setsockopt(socks[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        setsockopt(socks[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        if (connect(socks[i], (const struct sockaddr *)dst, dst_len) != 0) { perror("connect"); exit(2); }
        pfd[i].fd = socks[i]; pfd[i].events = POLLIN;
    }

    static uint8_t txbuf[MAX_BATCH][MAX_QUERY];
    static uint8_t rxbuf[MAX_BATCH][MAX_RESPONSE];
    static struct mmsghdr txmsg[MAX_BATCH], rxmsg[MAX_BATCH];
    static struct iovec txiov[MAX_BATCH], rxiov[MAX_BATCH];
    static uint16_t txid[MAX_BATCH];
    for (int i = 0; i < MAX_BATCH; i++) {
        txiov[i].iov_base = txbuf[i];
        txmsg[i].msg_hdr.msg_iov = &txiov[i]; txmsg[i].msg_hdr.msg_iovlen = 1;
        rxiov[i].iov_base = rxbuf[i]; rxiov[i].iov_len = MAX_RESPONSE;
        rxmsg[i].msg_hdr.msg_iov = &rxiov[i]; rxmsg[i].msg_hdr.msg_iovlen = 1;
    }
    int sock_rr = 0;

    for (;;) {
        uint64_t now = now_ns();
        int sending = phase(lim, now);
        if (sending < 0) break;
        int progressed = 0;

        /* Send phase. */
        uint64_t room = sending ? room_now(now, lim->start, (uint64_t)lim->window, lim->rate,
                                           lim->max_queries, (uint64_t)batch) : 0;
        if (room > 0) {
            int s = sock_rr;
            sock_rr = (sock_rr + 1) % nsock;
            int k = 0;
            for (; k < (int)room; k++) txiov[k].iov_len = (size_t)take_query(txbuf[k], &txid[k]);
            uint64_t t = now_ns();
            int r = sendmmsg(socks[s], txmsg, (unsigned)k, 0);
            if (r < 0) { r = 0; if (errno != EAGAIN && errno != EWOULDBLOCK) st.send_errors++; }
            for (int i = 0; i < k; i++) {
                if (i < r) mark_sent(txid[i], s, t);
                else slots[txid[i]].in_use = 0; /* not sent: the query goes back to the pool */
            }
            if (r < k) next_query = (next_query + query_count - (size_t)(k - r)) % query_count;
            if (r > 0) progressed = 1;
        }

        /* Receive phase: drain what every socket has. */
        for (int s = 0; s < nsock; s++) {
            for (int rounds = 0; rounds < 64; rounds++) {
                int r = recvmmsg(socks[s], rxmsg, (unsigned)batch, MSG_DONTWAIT, NULL);
                if (r <= 0) break;
                uint64_t t = now_ns();
                progressed = 1;
                for (int i = 0; i < r; i++) take_answer(rxbuf[i], rxmsg[i].msg_len, s, t);
                if (r < batch) break;
            }
        }
        expire(now_ns(), lim->timeout_ns);

        if (!progressed && sleep_between && lim->rate > 0) {
            /* Nothing due yet (or the window is full): sleep until the next send is due or
             * an answer arrives, at most 1 ms. */
            uint64_t wait = 1000000, t = now_ns();
            if (sending && st.outstanding < (uint64_t)lim->window) {
                uint64_t next = lim->start + (uint64_t)((double)(st.sent + skipped) * 1e9 / lim->rate);
                wait = next > t ? next - t : 0;
                if (wait > 1000000) wait = 1000000;
            }
            if (wait > 0) {
                struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)wait };
                ppoll(pfd, (nfds_t)nsock, &ts, NULL);
            }
        } else if (!progressed) {
            /* Window full (or nothing due yet): wait for an answer, at most 1 ms. */
            int can_send = sending && st.outstanding < (uint64_t)lim->window && lim->rate <= 0;
            if (!can_send) poll(pfd, (nfds_t)nsock, lim->rate > 0 ? 0 : 1);
        }
    }
}

/* One TCP connection of the TCP mode: queries go out with a 2-byte length prefix
 * (RFC 7766 section 8), answers are reassembled from the byte stream. */
struct tcp_conn {
    int fd;
    int connecting;
    uint32_t sent_here;           /* queries sent on this connection */
    uint8_t tx[16384];
    size_t tx_len, tx_off;        /* bytes not yet written */
    uint8_t rx[2 + 65535];
    size_t rx_len;
};

static void tcp_open(struct tcp_conn *c, int i, const struct sockaddr_storage *dst, socklen_t dst_len) {
    c->fd = socket(dst->ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { perror("socket"); exit(2); }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->connecting = 1;
    c->sent_here = 0;
    c->tx_len = c->tx_off = c->rx_len = 0;
    sock_gen[i]++;              /* answers to the old connection's queries are late now */
    sock_outstanding[i] = 0;
    if (connect(c->fd, (const struct sockaddr *)dst, dst_len) == 0) c->connecting = 0;
    else if (errno != EINPROGRESS) st.send_errors++;
}

static void tcp_close(struct tcp_conn *c) {
    close(c->fd);
    c->fd = -1;
}

static int tcp_flush(struct tcp_conn *c) {
    while (c->tx_off < c->tx_len) {
        ssize_t w = write(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off);
        if (w < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        c->tx_off += (size_t)w;
    }
    c->tx_off = c->tx_len = 0;
    return 0;
}

/* Reads what the connection has and takes every complete answer; -1 when it closed. */
static int tcp_read(struct tcp_conn *c, int i) {
    for (;;) {
        ssize_t r = read(c->fd, c->rx + c->rx_len, sizeof c->rx - c->rx_len);
        if (r == 0) return -1;
        if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        c->rx_len += (size_t)r;
        uint64_t t = now_ns();
        size_t off = 0;
        while (c->rx_len - off >= 2) {
            size_t len = (size_t)c->rx[off] << 8 | c->rx[off + 1];
            if (c->rx_len - off < 2 + len) break;
            take_answer(c->rx + off + 2, (unsigned)len, i, t);
            off += 2 + len;
        }
        memmove(c->rx, c->rx + off, c->rx_len - off);
        c->rx_len -= off;
    }
}

static void run_tcp(const struct limits *lim, const struct sockaddr_storage *dst, socklen_t dst_len,
                    uint32_t per_conn) {
    static struct tcp_conn conns[MAX_SOCKETS];
    struct pollfd pfd[MAX_SOCKETS];
    int n = lim->nsock;
    /* Each connection may have its share of the window in flight. */
    uint32_t conn_window = (uint32_t)(lim->window / n > 0 ? lim->window / n : 1);
    for (int i = 0; i < n; i++) tcp_open(&conns[i], i, dst, dst_len);

    for (;;) {
        uint64_t now = now_ns();
        int sending = phase(lim, now);
        if (sending < 0) break;

        for (int i = 0; i < n; i++) {
            struct tcp_conn *c = &conns[i];
            if (c->fd < 0) continue;
            if (c->connecting) {
                int err = 0;
                socklen_t el = sizeof err;
                struct pollfd one = { .fd = c->fd, .events = POLLOUT };
                if (poll(&one, 1, 0) <= 0) continue;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) { st.send_errors++; tcp_close(c); if (sending) tcp_open(c, i, dst, dst_len); continue; }
                c->connecting = 0;
            }
            /* Queue this connection's next queries, up to its window and its total. */
            uint64_t want = per_conn - c->sent_here;
            if (want > conn_window - sock_outstanding[i]) want = conn_window - sock_outstanding[i];
            uint64_t room = sending ? room_now(now_ns(), lim->start, (uint64_t)lim->window, lim->rate,
                                               lim->max_queries, want) : 0;
            if (room > 0 && c->tx_len == 0) {
                uint64_t t = now_ns();
                for (uint64_t k = 0; k < room && c->tx_len + 2 + MAX_QUERY <= sizeof c->tx; k++) {
                    uint16_t id;
                    int len = take_query(c->tx + c->tx_len + 2, &id);
                    c->tx[c->tx_len] = (uint8_t)(len >> 8);
                    c->tx[c->tx_len + 1] = (uint8_t)len;
                    c->tx_len += 2 + (size_t)len;
                    mark_sent(id, i, t);
                    c->sent_here++;
                }
            }
            if (tcp_flush(c) < 0 || tcp_read(c, i) < 0) {
                /* Closed or reset by the server: what was in flight on it expires as lost. */
                st.send_errors++;
                tcp_close(c);
                if (sending) tcp_open(c, i, dst, dst_len);
                continue;
            }
            if (c->sent_here == per_conn && sock_outstanding[i] == 0) {
                tcp_close(c);
                if (sending) tcp_open(c, i, dst, dst_len);
            }
        }
        expire(now_ns(), lim->timeout_ns);

        int np = 0;
        for (int i = 0; i < n; i++) {
            if (conns[i].fd < 0) continue;
            pfd[np].fd = conns[i].fd;
            pfd[np].events = POLLIN | (conns[i].connecting || conns[i].tx_len ? POLLOUT : 0);
            np++;
        }
        int idle = 1;
        for (int i = 0; i < n && sending; i++) {
            if (conns[i].fd >= 0 && !conns[i].connecting && conns[i].sent_here < per_conn
                && sock_outstanding[i] < conn_window) idle = 0;
        }
        /* Nothing more to send for now: wait for answers, at most 1 ms (fixed rate: do not wait). */
        if (np > 0) poll(pfd, (nfds_t)np, idle && lim->rate <= 0 ? 1 : 0);
    }
    for (int i = 0; i < n; i++) if (conns[i].fd >= 0) tcp_close(&conns[i]);
}

int main(int argc, char **argv) {
    const char *server = "127.0.0.1", *file = NULL;
    int port = 0, window = 200, nsock = 8, batch = 32, edns = 1;
    uint64_t max_queries = 100000000ull;
    double seconds = 10, rate = 0, timeout_ms = 1000;
    long per_conn = 0;
    int opt;
    while ((opt = getopt(argc, argv, "s:p:d:n:l:w:c:b:Q:t:T:S:K:ZEDh")) != -1) {
        switch (opt) {
        case 's': server = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'd': file = optarg; break;
        case 'n': max_queries = strtoull(optarg, NULL, 10); break;
        case 'l': seconds = atof(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'c': nsock = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'Q': rate = atof(optarg); break;
        case 't': timeout_ms = atof(optarg); break;
        case 'T': per_conn = atol(optarg); break;
        case 'E': edns = 0; break;
        case 'D': dnssec_ok = 1; break;
        case 'Z': sleep_between = 1; break;
        case 'K': max_behind = strtoull(optarg, NULL, 10); break;
        case 'S': stall_ns = (uint64_t)(atof(optarg) * 1000); break;
        default: usage();
        }
    }
    if (!file || port <= 0 || port > 65535) usage();
    if (window < 1 || window > 60000) die("-w must be 1..60000");
    if (nsock < 1 || nsock > MAX_SOCKETS) die("-c must be 1..64");
    if (batch < 1 || batch > MAX_BATCH) die("-b must be 1..256");
    if (seconds <= 0 || seconds > 3600) die("-l must be in (0, 3600]");
    if (timeout_ms <= 0 || timeout_ms > 10000) die("-t must be in (0, 10000]");
    if (per_conn < 0 || per_conn > 65535) die("-T must be 1..65535");

    /* Loopback only: this tool floods. */
    struct sockaddr_storage dst;
    socklen_t dst_len;
    memset(&dst, 0, sizeof dst);
    struct sockaddr_in *d4 = (struct sockaddr_in *)&dst;
    struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&dst;
    if (inet_pton(AF_INET, server, &d4->sin_addr) == 1) {
        if ((ntohl(d4->sin_addr.s_addr) >> 24) != 127) die("only 127.0.0.0/8 targets are allowed");
        d4->sin_family = AF_INET; d4->sin_port = htons((uint16_t)port);
        dst_len = sizeof *d4;
    } else if (inet_pton(AF_INET6, server, &d6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&d6->sin6_addr)) die("only ::1 is allowed");
        d6->sin6_family = AF_INET6; d6->sin6_port = htons((uint16_t)port);
        dst_len = sizeof *d6;
    } else die("bad server address");

    if (sleep_between) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    load_queries(file, edns);
    if (stall_ns < 10000 || stall_ns > 1000000000ull) die("-S must be 10..1000000");
    hist = calloc(HIST_BUCKETS, sizeof *hist);
    hist_clean = calloc(HIST_BUCKETS, sizeof *hist_clean);
    if (!hist || !hist_clean) die("out of memory");

    next_id = (uint16_t)(getpid() * 7919);
    struct limits lim = { .timeout_ns = (uint64_t)(timeout_ms * 1e6), .max_queries = max_queries,
                          .rate = rate, .window = window, .nsock = nsock, .batch = batch };
    lim.start = now_ns();
    lim.send_deadline = lim.start + (uint64_t)(seconds * 1e9);
    /* Draining after the send phase is bounded by the loss timeout. */
    lim.hard_deadline = lim.send_deadline + lim.timeout_ns + 100000000ull;
    st.last_answer = lim.start;
    if (per_conn > 0) run_tcp(&lim, &dst, dst_len, (uint32_t)per_conn);
    else run_udp(&lim, &dst, dst_len);

    uint64_t end = now_ns();
    if (st.send_end == 0) st.send_end = end;
    st.lost += st.outstanding;

    /* The rate is answers over the send phase: the drain adds answers, not offered load. */
    double elapsed = (double)(st.send_end - lim.start) / 1e9;
    if (elapsed <= 0) elapsed = 1e-9;
    uint64_t last = st.last_answer > st.send_end ? st.last_answer : st.send_end;
    double qps = (double)st.answered / ((double)(last - lim.start) / 1e9);
    uint64_t answered = st.answered;
    uint64_t p50 = percentile(hist, answered, 0.50), p90 = percentile(hist, answered, 0.90);
    uint64_t p99 = percentile(hist, answered, 0.99), p999 = percentile(hist, answered, 0.999);
    uint64_t p99_clean = percentile(hist_clean, answered_clean, 0.99);
    unsigned long long cpu_ns = 0, wait_ns = 0;
    FILE *ss = fopen("/proc/self/schedstat", "r");
    if (ss) {
        if (fscanf(ss, "%llu %llu", &cpu_ns, &wait_ns) != 2) wait_ns = 0;
        fclose(ss);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t other_rcodes = answered - st.rcodes[0] - st.rcodes[3];

    fprintf(stderr,
        "loadgen: %llu sent, %llu answered, %llu lost, %.0f qps over %.2f s; latency p50 %.3f ms, p99 %.3f ms;"
        " NOERROR %llu, NXDOMAIN %llu, other rcodes %llu, TC %llu\n",
        (unsigned long long)st.sent, (unsigned long long)answered, (unsigned long long)st.lost, qps, elapsed,
        (double)p50 / 1e6, (double)p99 / 1e6, (unsigned long long)st.rcodes[0], (unsigned long long)st.rcodes[3],
        (unsigned long long)other_rcodes, (unsigned long long)st.truncated);
    printf("sent=%llu answered=%llu lost=%llu late=%llu bad=%llu send_errors=%llu qps=%.1f elapsed=%.3f "
           "p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f noerror=%llu nxdomain=%llu other_rcode=%llu "
           "tc=%llu max_outstanding=%llu stalls=%llu stall_ms=%.3f max_stall_us=%.1f stalled_answers=%llu "
           "p99_clean_us=%.1f wait_ms=%.3f nivcsw=%ld skipped=%llu\n",
        (unsigned long long)st.sent, (unsigned long long)answered, (unsigned long long)st.lost,
        (unsigned long long)st.late, (unsigned long long)st.bad, (unsigned long long)st.send_errors, qps, elapsed,
        (double)p50 / 1e3, (double)p90 / 1e3, (double)p99 / 1e3, (double)p999 / 1e3,
        (unsigned long long)st.rcodes[0], (unsigned long long)st.rcodes[3], (unsigned long long)other_rcodes,
        (unsigned long long)st.truncated, (unsigned long long)st.max_outstanding, (unsigned long long)stalls,
        (double)stall_total_ns / 1e6, (double)stall_max_ns / 1e3, (unsigned long long)(answered - answered_clean),
        (double)p99_clean / 1e3, (double)wait_ns / 1e6, ru.ru_nivcsw, (unsigned long long)skipped);
    return 0;
}
