#include "early_signals.h"

#include <signal.h>

static int blocked_at_start = 0;

/* Priority 101, the first one available to programs: before other constructors of this
   binary. The mask is per thread and inherited, so every thread started later has it. */
__attribute__((constructor(101))) static void meridian_block_signals_early(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGHUP);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &s, 0) == 0) blocked_at_start = 1;
}

int meridian_early_signals_blocked(void) { return blocked_at_start; }
