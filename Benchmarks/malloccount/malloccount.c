/*
 * malloccount: an LD_PRELOAD library that counts heap allocations in a process, for the
 * benchmark's "the hot path allocates nothing" check.
 *
 * It wraps malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign and free,
 * forwarding to glibc's __libc_* entry points (no dlsym, which itself allocates). The
 * counters live in a file mapped shared (path in MALLOCCOUNT_FILE), so the harness reads
 * them from outside at any moment without signals: two little-endian uint64 at offsets
 * 0 (allocations) and 8 (frees). Counting is a relaxed atomic add per call.
 *
 * Build: gcc -O2 -shared -fPIC -o libmalloccount.so malloccount.c
 * Use:   MALLOCCOUNT_FILE=/tmp/counts LD_PRELOAD=./libmalloccount.so meridian serve ...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

/* Before the mapping exists (early in start-up) the counts go here. */
static uint64_t early[2];
static uint64_t *volatile counters = early;

__attribute__((constructor)) static void malloccount_init(void) {
    const char *path = getenv("MALLOCCOUNT_FILE");
    if (!path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    if (ftruncate(fd, 4096) != 0) { close(fd); return; }
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return;
    uint64_t *c = m;
    c[0] = early[0];
    c[1] = early[1];
    counters = c;
}

static inline void count_alloc(void) { __atomic_fetch_add(&counters[0], 1, __ATOMIC_RELAXED); }
static inline void count_free(void) { __atomic_fetch_add(&counters[1], 1, __ATOMIC_RELAXED); }

void *malloc(size_t n) { count_alloc(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count_alloc(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count_alloc(); return __libc_realloc(p, n); }
void free(void *p) { if (p) count_free(); __libc_free(p); }
void *memalign(size_t a, size_t n) { count_alloc(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { count_alloc(); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    count_alloc();
    if (a < sizeof(void *) || (a & (a - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(a, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}
