#ifndef MERIDIAN_CLIBFUZZER_H
#define MERIDIAN_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's entry point for programs that own `main` (compiler-rt FuzzerInterface.h).
/// Swift executables always get SwiftPM's `main`, so each fuzz target's main.swift calls
/// this with its callback instead of relying on libFuzzer's own `main`.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
