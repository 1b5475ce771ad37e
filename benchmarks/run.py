"""Entry point: `python -m benchmarks [--quick]` (see benchmarks/README.md)."""

import argparse
import datetime
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time

from benchmarks import inits, measure, pidns, report

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")


class Plan:
    """How much of each measurement a run does."""

    def __init__(self, quick):
        self.startup_runs, self.startup_warmup = (10, 2) if quick else (200, 10)
        self.idle_seconds, self.settle = (1.0, 0.5) if quick else (10.0, 1.0)
        self.orphans, self.storm_repeats = (300, 1) if quick else (5000, 3)
        # How long after a storm the zombies are counted.
        self.storm_grace = 0.1 if quick else 0.5
        self.signal_samples, self.signal_warmup = (100, 10) if quick else (5000, 50)
        self.scrapes = 50 if quick else 1000
        self.idle_connections = 100 if quick else 1000
        self.pods = 5 if quick else 50
        # How long `pypause --metrics-addr` may take to listen before the
        # metrics figures are skipped as not implemented.
        self.metrics_probe = 1.5 if quick else 5.0


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds with small counts: checks the benchmark, "
        "not the numbers (writes results/quick.md by default)",
    )
    p.add_argument(
        "--out",
        help="where to write the Markdown table; the chart goes "
        "next to it as .png (default: results/latest.md)",
    )
    p.add_argument(
        "--pypause",
        default=inits.default_pypause(),
        help="the installed pypause command (default: %(default)s)",
    )
    p.add_argument(
        "--as-installed",
        action="store_true",
        help="run --pypause and its #! interpreter as they are, with "
        "whatever their site-packages runs at start-up, instead of "
        "from a clean venv",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="INIT",
        help="leave out tini, dumb-init or catatonit (repeatable)",
    )
    return p.parse_args(argv)


def machine_line():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, Linux %s" % (model, os.cpu_count(), platform.release())


def _commit(directory):
    """ " at commit abc1234" (plus " with changes" if it differs), or "" outside git."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", directory] + list(args), capture_output=True, text=True
        ).stdout.strip()

    try:
        commit = git("log", "-1", "--format=%h", "--", ".")
        changed = git("status", "--porcelain", "--", ".")
    except OSError:
        return ""
    return " at commit %s%s" % (commit, " with changes" if changed else "") if commit else ""


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    plan = Plan(args.quick)
    default_out = os.path.join(HERE, "results", "quick.md" if args.quick else "latest.md")
    out_md = os.path.abspath(args.out or default_out)
    out_png = os.path.splitext(out_md)[0] + ".png"

    try:
        pidns.check_supported()
    except OSError as e:
        print("benchmarks: %s" % e.strerror, file=sys.stderr)
        return 2
    if not os.access(args.pypause, os.X_OK):
        print("benchmarks: no pypause at %s (pip install -e . ?)" % args.pypause, file=sys.stderr)
        return 2
    peers, notes = inits.peers(skip=args.skip)
    for note in notes:
        print("benchmarks: " + note, file=sys.stderr)
    # SIGTERM must unwind through the cleanup code, as ^C does.
    signal.signal(signal.SIGTERM, _raise_exit)

    results = measure.Results()
    results.notes.extend(notes)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pypause-bench-") as tmp:
        if args.as_installed:
            script = args.pypause
            python = inits.interpreter_of(script) or sys.executable
            how = "as installed"
            site_packages = None
        else:
            python, script, source, site_packages = inits.clean_environment(
                os.path.join(tmp, "venv"), args.pypause
            )
            how = "from a clean venv (see README), code from %s%s" % (source, _commit(source))
        pypause = inits.pypause(script)
        floors = inits.python_floors(python)
        variants, described = launch_variants(
            os.path.join(tmp, "image"), python, script, site_packages, args.pypause, results
        )
        all_inits = [pypause] + floors + variants + peers
        _measure_all(plan, all_inits, python, script, os.path.join(tmp, "inits.log"), results)
    elapsed = time.monotonic() - started

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        "# pypause vs tini, dumb-init, catatonit and the Python floor%s"
        % (" (quick run: small counts, not for comparison)" if args.quick else ""),
        "",
        "Run on %s on %s, in %.0f s." % (date, machine_line(), elapsed),
        "Command: `python -m benchmarks%s`."
        % "".join(" " + a for a in (sys.argv[1:] if argv is None else argv)),
    ]
    settings = (
        [
            "every init runs as PID 1 of a new PID namespace with a /proc of its own, and "
            "PATH as its only environment variable, as in a container",
            "pypause: the installed pypause command, run %s (%s)" % (how, pypause.version),
            "Python floor: `python -I -c CODE` on the same interpreter, CODE being "
            "`import _signal as S` and the minimal init FLOOR of benchmarks/inits.py (%s); "
            '"%s": the same with `import signal as S`'
            % (floors[0].version, inits.SIGNAL_FLOOR_NAME),
        ]
        + ['"%s": %s' % (i.name, described[i.name]) for i in variants]
        + (
            [
                "the launch variants (%s) take part in the start-up, idle and per-pod "
                "figures; the signal and storm figures are those of the loop, which every "
                "launch runs alike" % ", ".join('"%s"' % i.name for i in variants)
            ]
            if variants
            else []
        )
        + ["%s: %s" % (i.name, i.version) for i in peers]
        + [
            "start-up: median of %d runs of each, interleaved in random order; "
            '"no init" runs `true` alone as PID 1; time until the child runs: from the '
            "init's exec to its child's, both stamped by the kernel (proc connector), over "
            "the same runs" % plan.startup_runs,
            "idle: memory after, and context switches during, %.0f s in which all inits "
            "idle side by side" % plan.idle_seconds,
            "per pod: %d copies of each init in pause mode, each PID 1 of its own namespace, "
            "one init's copies at a time; PSS and USS read %.1f s after the last started, "
            "mean of the copies" % (plan.pods, plan.settle),
            "reap storms: %d orphans behind each init, %d storm(s) of each kind (see README), "
            "medians; zombies counted %.1f s after each storm"
            % (plan.orphans, plan.storm_repeats, plan.storm_grace),
            'signal latency: %d SIGUSR1 per init, one at a time; "no init" signals the child '
            "directly" % plan.signal_samples,
            "metrics: %d scrapes, each on a new connection; storms as above, with "
            "`--metrics-addr`" % plan.scrapes,
            "idle metrics connections: %d TCP connections to pypause's metrics port (pause mode), "
            "opened at once and sending nothing; threads and RSS sampled once pypause has "
            "accepted them all, RSS growth against the same process just before"
            % plan.idle_connections,
        ]
    )
    os.makedirs(os.path.dirname(out_md), exist_ok=True)
    columns = [i.name for i in all_inits] + [measure.NO_INIT]
    why_no_chart = report.chart(
        results, columns, out_png, "pypause benchmark, %s, %s" % (date, machine_line())
    )
    if why_no_chart:
        results.notes.append(why_no_chart)
    text = report.markdown(
        results,
        columns,
        header,
        settings,
        chart_name=None if why_no_chart else os.path.basename(out_png),
    )
    with open(out_md, "w") as f:
        f.write(text)
    sys.stdout.write(text)
    print(
        "benchmarks: wrote %s%s" % (out_md, "" if why_no_chart else " and " + out_png),
        file=sys.stderr,
    )
    if not args.quick and not args.out:
        first_line = "Latest run: %s, %s, %s (full table: [%s](%s)):" % (
            date.split()[0],
            machine_line(),
            " ".join(floors[0].version.split()[:2]),
            _link(out_md),
            _link(out_md),
        )
        block = report.readme_block(
            results, columns, first_line, None if why_no_chart else _link(out_png)
        )
        update_readme(README, block)
    return 0


def _measure_all(plan, all_inits, python, script, log_path, results):
    """Every measurement the `plan` asks for, one after another, the inits'
    output logged to `log_path`: its end is printed if one fails or is stopped."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # A pypause without metrics starts fine and serves nothing: try it.
        metrics_on = measure.metrics_served(script, plan.metrics_probe, log_fd)
        if not metrics_on:
            for init in all_inits:
                if init.serves_metrics:
                    init.metrics_argv = None
            results.notes.append(
                "`pypause --metrics-addr %s` served nothing within %.0f s: pypause's "
                "metrics figures are skipped" % (inits.METRICS_ADDR, plan.metrics_probe)
            )
        for name, step in _steps(plan, all_inits, python, script, metrics_on, log_fd, results):
            t = time.monotonic()
            print("benchmarks: %s ..." % name, end=" ", file=sys.stderr, flush=True)
            step()
            print("%.1f s" % (time.monotonic() - t), file=sys.stderr)
    except BaseException as e:
        stopped = isinstance(e, (KeyboardInterrupt, SystemExit))
        print(
            "\nbenchmarks: %s; output of the inits:" % ("stopped" if stopped else "failed"),
            file=sys.stderr,
        )
        with open(log_path, errors="replace") as f:
            sys.stderr.write(f.read()[-4000:])
        raise
    finally:
        os.close(log_fd)


def _steps(plan, all_inits, python, script, metrics_on, log_fd, results):
    """[(name, measurement)] of the run; pypause's metrics figures if `metrics_on`."""
    # The launch variants run the same loop as what they vary: they take
    # part in the start-up and memory figures, not in the loop's.
    loop_inits = [i for i in all_inits if not i.variant]
    steps = [
        (
            "start-up",
            lambda: measure.startup(
                all_inits, plan.startup_runs, plan.startup_warmup, log_fd, results
            ),
        ),
        (
            "idle memory and wake-ups",
            lambda: measure.idle(all_inits, plan.idle_seconds, plan.settle, log_fd, results),
        ),
        (
            "per-pod memory",
            lambda: measure.pods(
                [i for i in all_inits if i.pause_argv],
                plan.pods,
                plan.settle,
                log_fd,
                results,
            ),
        ),
        (
            "signal latency",
            lambda: measure.signal_latency(
                loop_inits, python, plan.signal_samples, plan.signal_warmup, log_fd, results
            ),
        ),
        (
            "reap storms",
            lambda: measure.reap_storm(
                loop_inits,
                python,
                plan.orphans,
                plan.storm_repeats,
                plan.storm_grace,
                log_fd,
                results,
            ),
        ),
    ]
    if metrics_on:
        steps.append(
            (
                "metrics cost",
                lambda: measure.metrics_cost(
                    script,
                    python,
                    plan.scrapes,
                    plan.orphans,
                    plan.storm_repeats,
                    plan.storm_grace,
                    log_fd,
                    results,
                ),
            )
        )
        steps.append(
            (
                "idle metrics connections",
                lambda: measure.idle_connections(
                    script, plan.idle_connections, plan.settle, log_fd, results
                ),
            )
        )
    return steps


def launch_variants(directory, python, script, site_packages, installed, results):
    """The other launches measured beside pip's command and the floor: ([Init], {name:
    how it is launched}). Without `site_packages` (--as-installed), the pause
    image's launch is `python -IS script` as they are; otherwise the image-like
    prefix of inits.image_environment is made in `directory` from the clean
    venv's site-packages and the command `installed`. A launch that cannot be
    made or does not start is left out with a note saying why."""
    variants = [inits.pypause_app_environment(script)]
    described = {
        inits.APP_ENV_NAME: "pip's command as above with %s=%s in its environment, next to "
        "PATH: pypause re-executes itself as `python3 -I -S` (bin/pypause)" % inits.APP_VARIABLE
    }
    no_site_python = python
    if site_packages is None:
        variants.append(inits.pypause_no_site(script, python))
        described[inits.NO_SITE_NAME] = "`%s -IS %s`, as the pause image launches it" % (
            python,
            script,
        )
    else:
        try:
            no_site_python, image_script, linked = inits.image_environment(
                directory, python, site_packages, installed
            )
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            results.notes.append(
                "%s: skipped, no image-like prefix could be made: %s" % (inits.NO_SITE_NAME, e)
            )
        else:
            variants.append(inits.pypause_no_site(image_script))
            described[inits.NO_SITE_NAME] = (
                "as the pause image launches it: its command with the line `#!PYTHON -IS`, "
                "PYTHON being the same interpreter in a prefix of its own (%s, the standard "
                "library linked, pypause and its dependencies copied into its site-packages: "
                "see README)" % linked
            )
    variants.append(inits.no_site_floor(no_site_python))
    described[inits.NO_SITE_FLOOR_NAME] = (
        "the Python floor's CODE with `posix` in place of `os` (loaded without site, where "
        "`os` is not), run with `-I -S`%s"
        % (' on the interpreter of "%s"' % inits.NO_SITE_NAME if no_site_python != python else "")
    )
    for variant in list(variants):
        failure = inits.launch_failure(variant)
        if failure:
            variants.remove(variant)
            results.notes.append("%s: skipped, %s" % (variant.name, failure))
    return variants, described


def _link(path):
    return os.path.relpath(path, os.path.dirname(README))


def update_readme(path, block):
    """Put `block` between the benchmark markers of the README at `path`; without
    the markers, say so and leave the file alone."""
    with open(path) as f:
        text = report.with_readme_block(f.read(), block)
    if text is None:
        print(
            "benchmarks: %s has no %s ... %s markers: not updated"
            % (path, report.README_BEGIN, report.README_END),
            file=sys.stderr,
        )
        return False
    with open(path, "w") as f:
        f.write(text)
    print("benchmarks: wrote the benchmark block of %s" % path, file=sys.stderr)
    return True
