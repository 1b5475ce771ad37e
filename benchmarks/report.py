"""The Markdown table, the targets verdict and the chart."""

from benchmarks import inits

FLOOR = inits.FLOOR_NAME

# (key, label, decimals); a row shows only if some init has the figure.
ROWS = [
    ("startup_ms", "start-up, `INIT -- true` as PID 1 (ms, median)", 2),
    ("child_ms", "time until the child runs, init's exec to child's exec (ms, median)", 2),
    ("rss_pause", "idle RSS, pause mode (MiB)", 2),
    ("uss_pause", "idle USS, pause mode (MiB)", 2),
    ("uss_metrics_floor", "idle USS, metrics on (MiB; floor: pause mode, no metrics)", 2),
    ("rss_init", "idle RSS, init mode, child sleeping (MiB)", 2),
    ("uss_init", "idle USS, init mode, child sleeping (MiB)", 2),
    ("pss_pods", "mean PSS per pod, pause mode, pods side by side (MiB)", 2),
    ("uss_pods", "mean USS per pod, pause mode, pods side by side (MiB)", 2),
    ("rss_metrics", "idle RSS, metrics on (MiB; floor: + `import prometheus_client`)", 2),
    ("uss_metrics", "idle USS, metrics on (MiB; floor: + `import prometheus_client`)", 2),
    ("wakeups_pause", "wake-ups while idle, pause mode", 0),
    ("wakeups_init", "wake-ups while idle, init mode", 0),
    ("wakeups_metrics", "wake-ups while idle, metrics on", 0),
    ("reap_us", "reap CPU per orphan, zombie storm (µs)", 2),
    ("reap_us_exits", "reap CPU per orphan, exit storm (µs; noisy, see README)", 2),
    ("switches_exits", "context switches of the init in the exit storm", 0),
    ("zombies", "zombies left after a storm (worst of all)", 0),
    ("signal_median_us", "signal latency, median (µs)", 1),
    ("signal_p99_us", "signal latency, p99 (µs)", 1),
    ("signal_cpu_us", "init CPU per forwarded signal (µs)", 2),
    ("scrape_median_ms", "`/metrics` scrape latency, median (ms)", 2),
    ("scrape_p99_ms", "`/metrics` scrape latency, p99 (ms)", 2),
    ("scrape_crowd_median_ms", "`/metrics` scrape latency, 1,000 processes, median (ms)", 2),
    ("scrape_crowd_p99_ms", "`/metrics` scrape latency, 1,000 processes, p99 (ms)", 2),
    ("reap_metrics_us", "reap CPU per orphan, zombie storm, metrics on (µs)", 2),
    ("reap_scraped_us", "reap CPU per orphan, exit storm, metrics on, scraped 10×/s (µs)", 2),
    ("zombies_metrics", "zombies left after a storm, metrics on", 0),
    ("threads_connections", "threads with idle metrics connections open", 0),
    ("rss_connections", "RSS with idle metrics connections open (MiB)", 2),
    ("rss_connections_growth", "RSS growth from idle metrics connections (MiB)", 2),
]


def ratio(results, key, against):
    mine, theirs = results.get(key, "pypause"), results.get(key, against)
    if mine is None or not theirs:
        return None
    return mine / theirs


def targets(results):
    """[(target, measured, verdict)]: verdict is "pass", "miss" or "skipped"."""
    rows = []

    def by_ratio(text, key, against, limit):
        r = ratio(results, key, against)
        if r is None:
            rows.append((text, "—", "skipped"))
        else:
            rows.append((text, "%.2f×" % r, "pass" if r <= limit else "miss"))

    def by_count(text, keys):
        counts = [results.get(k, "pypause") for k in keys]
        counts = [c for c in counts if c is not None]
        if not counts:
            rows.append((text, "—", "skipped"))
        else:
            rows.append((text, "max %d" % max(counts), "pass" if max(counts) == 0 else "miss"))

    by_ratio("`INIT -- true` ≤ 1.15× Python floor", "startup_ms", FLOOR, 1.15)
    by_ratio("time until the child runs ≤ 1.1× Python floor", "child_ms", FLOOR, 1.1)
    by_ratio("idle USS, pause mode ≤ 1.15× Python floor", "uss_pause", FLOOR, 1.15)
    by_ratio("idle RSS, pause mode ≤ 1.1× Python floor", "rss_pause", FLOOR, 1.1)
    by_ratio(
        "idle USS, metrics on ≤ 2.5× Python floor (pause mode, no metrics)",
        "uss_metrics_floor",
        FLOOR,
        2.5,
    )
    by_count(
        "0 wake-ups while idle, every mode", ["wakeups_pause", "wakeups_init", "wakeups_metrics"]
    )
    by_ratio("reap CPU per orphan (zombie storm) ≤ 1.5× tini", "reap_us", "tini", 1.5)
    by_count("0 zombies left after a storm", ["zombies", "zombies_metrics"])
    by_ratio("signal latency median ≤ 1.5× tini", "signal_median_us", "tini", 1.5)
    by_ratio("signal latency p99 ≤ 2× tini", "signal_p99_us", "tini", 2.0)
    crowd = results.get("scrape_crowd_p99_ms", "pypause")
    rows.append(
        (
            "`/metrics` scrape p99 < 5 ms, 1,000 processes in the namespace",
            "—" if crowd is None else "%.2f ms" % crowd,
            "skipped" if crowd is None else "pass" if crowd < 5 else "miss",
        )
    )
    return rows


# The issue that isolated pypause from the app's Python environment: its
# common case (pip's command, no PYTHON* variable) must start no slower,
# against the Python floor, than before it. The code before it (f646aae),
# measured by this harness on the machine of the latest run:
# results/before-isolation.md (1.39x and 1.42x; a second run, 1.39x and
# 1.44x). The issue's own figures (1.31x and 1.26x, 2026-11-28) came from
# an earlier harness on another Python and are not comparable. A bound on a
# ratio, shown in the launches' table; the targets above are unchanged.
ISOLATION_BOUNDS = (("startup_ms", 1.39), ("child_ms", 1.42))

# (launch, what it is measured against, what the row shows, bounded by ISOLATION_BOUNDS)
LAUNCHES = [
    (inits.PYPAUSE_NAME, FLOOR, "pip's command, no PYTHON* variable", True),
    (inits.NO_SITE_NAME, inits.NO_SITE_FLOOR_NAME, "as the pause image starts it, no site", False),
    (
        inits.APP_ENV_NAME,
        FLOOR,
        "pip's command, %s=%s: re-executed as `python3 -I -S`" % inits.APP_VARIABLE,
        False,
    ),
    (inits.APP_ENV_NAME, inits.PYPAUSE_NAME, "what that re-exec costs", False),
    (inits.NO_SITE_FLOOR_NAME, FLOOR, "the floors: what site (and the os it loads) costs", False),
]


def launch_rows(results):
    """[(launch, what, against, start-up cell, child cell, bound cell)] for each
    launch measured with what it is measured against."""
    rows = []
    for launch, against, what, bounded in LAUNCHES:
        cells, checks, over = [], [], False
        for (key, bound), figure in zip(ISOLATION_BOUNDS, ("`INIT -- true`", "to the child")):
            mine, theirs = results.get(key, launch), results.get(key, against)
            if mine is None or not theirs:
                cells.append("—")
                continue
            r = round(mine / theirs, 2)  # judged as shown
            cells.append("%.2f× (%+.2f ms)" % (r, mine - theirs))
            checks.append("%s %.2f× %s %.2f×" % (figure, r, ">" if r > bound else "≤", bound))
            over = over or r > bound
        if cells == ["—", "—"]:
            continue
        if bounded and checks:
            bound_cell = "%s: %s" % ("**NO**" if over else "yes", "; ".join(checks))
        else:
            bound_cell = "—"
        rows.append((launch, what, against) + tuple(cells) + (bound_cell,))
    return rows


LAUNCHES_INTRO = (
    "Start-up by launch, from the same run: each launch's median over the one it is "
    "measured against, and in brackets the difference. The bound: pip's command with no "
    "PYTHON* variable no slower against the floor than the code before pypause isolated "
    "itself from the app's Python, measured by this harness (results/before-isolation.md: "
    "%s)." % " and ".join("%.2f×" % bound for _, bound in ISOLATION_BOUNDS)
)


def launches_table(results):
    """pypause's start-up by launch, each against its floor: [] if none was measured."""
    rows = launch_rows(results)
    if not rows:
        return []
    out = [
        "| launch | what | against | `INIT -- true` | time until the child runs "
        "| no slower than before the isolation |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        out.append("| %s |" % " | ".join(row))
    return out


def _cell(value, decimals):
    if value is None:
        return "—"
    return "{:,.{}f}".format(value, decimals)


def figures_table(results, columns):
    """The figures, a row each, a column per init, then pypause's ratios."""
    head = ["figure"] + columns + ["pypause ÷ floor", "pypause ÷ tini"]
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for key, label, decimals in ROWS:
        if key not in results.values:
            continue
        cells = [label] + [_cell(results.get(key, c), decimals) for c in columns]
        for against in (FLOOR, "tini"):
            r = ratio(results, key, against)
            cells.append("—" if r is None else "%.2f×" % r)
        out.append("| " + " | ".join(cells) + " |")
    return out


def targets_table(results):
    out = ["| target | pypause | verdict |", "|---|---:|---|"]
    for text, measured, verdict in targets(results):
        out.append(
            "| %s | %s | %s |" % (text, measured, "**MISS**" if verdict == "miss" else verdict)
        )
    return out


def markdown(results, columns, header_lines, settings_lines, chart_name=None):
    """The whole results page: what ran where, the table, the targets, the notes."""
    out = list(header_lines) + [""] + figures_table(results, columns)
    out += ["", "— : the init has no such mode, or the figure does not apply to it.", ""]
    out += ["## Targets", ""] + targets_table(results)
    launches = launches_table(results)
    if launches:
        out += ["", "## Start-up by launch", "", LAUNCHES_INTRO, ""] + launches
    out += ["", "## How this run was made", ""] + ["- " + line for line in settings_lines]
    if results.notes:
        out += ["", "## Notes", ""] + ["- " + n for n in results.notes]
    if chart_name:
        out += ["", "![chart](%s)" % chart_name]
    return "\n".join(out) + "\n"


README_BEGIN, README_END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def readme_block(results, columns, first_line, chart_link=None):
    """What a full run writes between the README's markers: its first line, the
    figures, the chart, the targets (two tables, never one)."""
    out = [first_line, ""] + figures_table(results, columns)
    if chart_link:
        out += ["", "![benchmark chart](%s)" % chart_link]
    out += ["", "Targets, ratios from the same run:", ""] + targets_table(results)
    launches = launches_table(results)
    if launches:
        out += ["", LAUNCHES_INTRO, ""] + launches
    return "\n".join(out) + "\n"


def with_readme_block(readme, block):
    """`readme` with `block` between its markers, the rest unchanged; None
    if the markers are missing or out of order."""
    begin = readme.find(README_BEGIN)
    end = readme.find(README_END, begin + 1)
    if begin < 0 or end < 0:
        return None
    return readme[: begin + len(README_BEGIN)] + "\n" + block + readme[end:]


# Panels of the chart: (title, [(key, bar label)]). A log scale where one
# init's figure would flatten the others' bars.
_LOG_SCALE = {"signal latency (µs, log scale)"}
_PANELS = [
    ("start-up (ms, median)", [("startup_ms", "wall"), ("child_ms", "to child")]),
    ("idle RSS (MiB)", [("rss_pause", "pause"), ("rss_init", "init"), ("rss_metrics", "metrics")]),
    ("idle USS (MiB)", [("uss_pause", "pause"), ("uss_init", "init"), ("uss_metrics", "metrics")]),
    ("per pod, pause mode, side by side (MiB)", [("pss_pods", "PSS"), ("uss_pods", "USS")]),
    (
        "wake-ups while idle",
        [("wakeups_pause", "pause"), ("wakeups_init", "init"), ("wakeups_metrics", "metrics")],
    ),
    ("reap CPU per orphan, zombie storm (µs)", [("reap_us", None)]),
    ("signal latency (µs, log scale)", [("signal_median_us", "median"), ("signal_p99_us", "p99")]),
]


def chart(results, columns, path, title):
    """Write a PNG of the main figures; return None, or why there is no chart."""
    try:
        import matplotlib
    except ImportError:
        return (
            "matplotlib is not installed (pip install matplotlib, or the `bench` extra): no chart"
        )
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(2, 4, figsize=(20, 8.5))
    for ax in axes.flat[len(_PANELS) :]:
        ax.set_axis_off()
    palette = pyplot.get_cmap("tab10")
    colours = {name: palette(i) for i, name in enumerate(columns)}
    for ax, (panel_title, series) in zip(axes.flat, _PANELS):
        names = [c for c in columns if any(results.get(k, c) is not None for k, _ in series)]
        width = 0.8 / len(series)
        for s, (key, label) in enumerate(series):
            for n, name in enumerate(names):
                value = results.get(key, name)
                if value is None:
                    continue
                x = n + (s - (len(series) - 1) / 2) * width
                ax.bar(
                    x,
                    value,
                    width * 0.95,
                    color=colours[name],
                    alpha=1.0 if s == 0 else 0.55,
                    edgecolor="black" if name == "pypause" else "none",
                )
                if label:
                    ax.text(x, value, label, ha="center", va="bottom", fontsize=6, rotation=90)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_title(panel_title, fontsize=10)
        if panel_title in _LOG_SCALE:
            ax.set_yscale("log")
        ax.margins(y=0.2)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
    return None
