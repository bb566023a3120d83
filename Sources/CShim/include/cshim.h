#ifndef MERIDIAN_CSHIM_H
#define MERIDIAN_CSHIM_H
/* Wrappers for socket calls and macros Swift's Glibc module does not import.
   The .c file defines _GNU_SOURCE; this header must not (it breaks fd_set's import). */
int cshim_placeholder(void);
#endif
