"""A simulated cluster for the demo, the tests and the benchmarks: the workload generator, the fake kubelet
and `make demo` itself. The receiver (`collector-ext serve`) never imports this package."""
