/* Counts malloc calls made on the server's own threads (named "dns-udp-N" / "dns-tcp-N"
   by DNSServer), to check that the per-query path does not allocate.
   Build: clang -shared -fPIC -O2 -o libmalloc-count.so malloc-count.c -ldl
   Use:   LD_PRELOAD=./libmalloc-count.so <process running a DNSServer>
   Prints "MALLOCS udp=N tcp=M" at exit. Names are checked on every malloc until a thread
   is found to be a server thread, because a thread allocates before it names itself. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static atomic_long udp_count, tcp_count;
static __thread int kind = -1;
static void *(*real_malloc)(size_t);

static int classify(void) {
    if (kind < 0) {
        char n[16] = {0};
        pthread_getname_np(pthread_self(), n, sizeof n);
        kind = strncmp(n, "dns-udp", 7) == 0 ? 1 : strncmp(n, "dns-tcp", 7) == 0 ? 2 : -1;
    }
    return kind;
}

void *malloc(size_t s) {
    if (!real_malloc) real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    int k = classify();
    if (k == 1) atomic_fetch_add(&udp_count, 1);
    if (k == 2) atomic_fetch_add(&tcp_count, 1);
    return real_malloc(s);
}

__attribute__((destructor)) static void report(void) {
    fprintf(stderr, "MALLOCS udp=%ld tcp=%ld\n", (long)udp_count, (long)tcp_count);
}
