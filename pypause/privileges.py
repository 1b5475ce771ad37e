"""Giving up root in pause mode: a sandbox that reaps needs no privilege.

CRI-O runs the infra container as root whatever the image's USER says, and a
podman pod's infra container has no user: without this, a Python interpreter
(and with metrics a network listener) would run as root in every pod.
"""

import os

from pypause import kernel


def become(uid: int, gid: int) -> None:
    """Become `uid`:`gid` for good (real, effective and saved), with no
    supplementary groups. Raise OSError if the kernel refuses (EPERM when not
    root, EINVAL for an id the user namespace does not map); nothing has
    changed then.

    Leaving uid 0 for another clears every capability (permitted, effective,
    ambient). It also clears the parent-death signal, pypause's own (-p) or
    the one it inherited (`unshare --kill-child`, a runtime's shim): asked
    for again here, and sent at once if the parent died in between (which a
    PID 1 cannot see: its parent is outside its namespace, and getppid() says
    0 either way; the window is the few microseconds between the prctl calls).
    """
    if os.getresuid() == (uid,) * 3 and os.getresgid() == (gid,) * 3 and not os.getgroups():
        return  # already: setgroups() would need a privilege for nothing
    death = kernel.get_pdeathsig()
    parent = os.getppid()
    groups, gids = os.getgroups(), os.getresgid()
    os.setgroups([])
    try:
        os.setresgid(gid, gid, gid)
        try:
            os.setresuid(uid, uid, uid)
        except OSError:
            os.setresgid(*gids)
            raise
    except OSError:
        os.setgroups(groups)
        raise
    if death:
        kernel.set_pdeathsig(death)
        if os.getppid() != parent:
            os.kill(os.getpid(), death)
