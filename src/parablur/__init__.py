"""ParaBlur: fault-tolerant image anonymization and parallel-speedup benchmarking."""

__version__ = "0.1.0"
