"""bpfwatch tracers: declarative eBPF tracers for the terminal and Prometheus."""

__version__ = "0.1.0"
