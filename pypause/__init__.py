"""pypause: a pure-Python init process for containers."""

__version__ = "0.1.0"
