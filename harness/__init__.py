"""goverse-harness: end-to-end conformance and chaos test harness for Goverse."""

__version__ = "0.1.0"
