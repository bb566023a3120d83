// Only the declaration in include/CLibFuzzer.h matters: libFuzzer itself is linked by
// `-sanitize=fuzzer`. SwiftPM needs one source file to make this a C target.
#include "CLibFuzzer.h"
