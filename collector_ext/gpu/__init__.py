"""GPU slices: kubelet PodResources allocations (DRA and device plugins) and dcgm-exporter metrics."""
