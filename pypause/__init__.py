"""pypause: a pure-Python init process for containers."""

__version__ = "0.1.0"
#: Checked by the `pypause` command: PyPI's unrelated "pypause" project also
#: installs a top-level package named pypause, which would shadow this one.
__distribution__ = "pypause-init"
