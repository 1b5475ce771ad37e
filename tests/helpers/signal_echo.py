"""Print the name of every signal received; exit with argv[1] when stdin closes.

`--ignore SIG` ignores that signal instead. Prints "ready" once set up.
With ECHO_WAIT=sleep in the environment it does not read stdin (a background
job's stdin is /dev/null) and exits 0 after echoing SIGTERM.
"""

import os
import signal
import sys

code = int(sys.argv[1])
ignored = {getattr(signal, s) for s in sys.argv[3::2]} if "--ignore" in sys.argv else set()


sleep_mode = os.environ.get("ECHO_WAIT") == "sleep"


def echo(signum, frame):
    os.write(
        1,
        (
            "%s\n" % signal.Signals(signum).name
            if signum in signal.Signals._value2member_map_
            else "SIG%d\n" % signum
        ).encode(),
    )
    if sleep_mode and signum == signal.SIGTERM:
        sys.exit(0)


for signum in signal.valid_signals():
    if signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        continue
    try:
        signal.signal(signum, signal.SIG_IGN if signum in ignored else echo)
    except (OSError, ValueError):
        pass
os.write(1, b"ready\n")
if sleep_mode:
    while True:
        signal.pause()
while os.read(0, 1024):
    pass
sys.exit(code)
