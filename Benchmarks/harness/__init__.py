"""The benchmark harness behind Benchmarks/run, split by concern (see Benchmarks/README.md)."""
