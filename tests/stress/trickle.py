"""A steady trickle of orphans for the soak test.

usage: trickle.py INTERVAL

Every INTERVAL seconds a middle process starts `true` and exits at once, so
`true` is an orphan of the init. Commands on stdin, one per line:
  pause    stop making orphans; answers "paused N" (orphans made so far)
  resume   go on
EOF on stdin: answers "done N" and exits.
"""

import os
import select
import shutil
import sys

TRUE = shutil.which("true")
interval = float(sys.argv[1])
made = 0
running = True


def orphan():
    middle = os.fork()
    if middle == 0:
        try:
            os.posix_spawn(TRUE, ["true"], os.environ)
        finally:
            os._exit(0)
    os.waitpid(middle, 0)


def say(text):
    os.write(1, text.encode() + b"\n")


while True:
    ready, _, _ = select.select([0], [], [], interval if running else None)
    if ready:
        line = os.read(0, 1024).decode()
        if not line:
            say("done %d" % made)
            break
        for word in line.split():
            if word == "pause":
                running = False
                say("paused %d" % made)
            elif word == "resume":
                running = True
    elif running:
        orphan()
        made += 1
