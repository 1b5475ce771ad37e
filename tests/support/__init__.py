"""What the tests and the benchmarks share: one module for each job.

- proc: what the kernel says about processes, read from /proc
- http: pypause's metrics as a scraper sees them
- running: the installed pypause, the test programs, waits, PID namespaces
- cgroups: a pids cgroup of the tests' own, entering cgroups
"""
