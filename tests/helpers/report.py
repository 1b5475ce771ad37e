"""Print, as JSON, what this process was given: argv, cwd, env, stdio, group."""

import json
import os
import sys


def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


# first of all: any file opened below would take the lowest free fd
stdio_open = [is_open(fd) for fd in (0, 1, 2)]
status = {}
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        status[key] = value.strip()
out = json.dumps(
    {
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "SigBlk": status["SigBlk"],
        "SigIgn": status["SigIgn"],
        "stdio_open": stdio_open,
        "pgid": os.getpgid(0),
        "pid": os.getpid(),
        "ppid": os.getppid(),
    }
)
target = os.environ.get("REPORT_TO")
if target:
    with open(target, "w") as f:
        f.write(out)
else:
    print(out, flush=True)
