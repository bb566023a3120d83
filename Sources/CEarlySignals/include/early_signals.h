#ifndef MERIDIAN_EARLY_SIGNALS_H
#define MERIDIAN_EARLY_SIGNALS_H
/* Blocks SIGHUP, SIGTERM, SIGINT and SIGUSR1 from a C constructor, before the Swift runtime,
   Foundation or any thread starts (the only earlier code is the dynamic loader and the
   constructors of the shared libraries). A signal sent after that is pending until the
   server's sigwait thread takes it, or until a command that does not handle signals
   unblocks them (Signals.unblockAll). Without it, a SIGHUP in the first ~20 ms after exec
   killed the process (exit 129).

   Linked only into the `meridian` executable, not into CShim: the test runner links CShim
   (through Health and Server) and must keep Ctrl-C and SIGTERM working. */

/* 1 when the constructor ran and blocked the signals, else 0. main.swift calls it, which
   also keeps the object file (and so the constructor) in the link. */
int meridian_early_signals_blocked(void);

#endif
