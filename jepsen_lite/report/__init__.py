"""The report of a checked run (jepsen.md §6.6), written next to its history:

    timeline.html      operations per process, fault windows shaded, violating operations outlined   timeline.py
    latency-raw.png    latency of every operation against time, fault windows shaded               plots.py
    rate.png           completions per second by type, fault windows shaded                        plots.py
    the summary        printed, one line per subject, the verdict last                             summary.py
"""

FAULT_COLOURS = ("#888888", "#9b59b6", "#27ae60", "#e67e22", "#2980b9", "#c0392b")


def fault_colours(windows) -> dict[str, str]:
    """One colour per fault name, the same in every report of a run."""
    faults = sorted({window.fault for window in windows})
    return {fault: FAULT_COLOURS[index % len(FAULT_COLOURS)] for index, fault in enumerate(faults)}
