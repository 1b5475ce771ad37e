"""Fixtures of the stress tests; prints what they measured at the end of the run.

Short versions run by default; PYPAUSE_STRESS=1 runs the long ones.
"""

from tests.stress.stress_support import MEASURED, STRESS


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("stress figures (%s versions)" % ("long" if STRESS else "short"))
        for key, value in MEASURED.items():
            terminalreporter.write_line("%s: %s" % (key, value))
