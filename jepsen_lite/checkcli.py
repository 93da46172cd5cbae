"""`python -m jepsen_lite check <dir>`: check a saved run offline, as its run did (jepsen.md §6.4, §6.5).

Reads `<dir>/history.jsonl`, runs every checker, writes `results.json`, `timeline.html`, `latency-raw.png` and
`rate.png` next to it, prints the summary, and returns the exit status:

    0  PASS       every checker found the history valid
    1  FAIL       a safety violation
    2  UNKNOWN    a checker could not decide (a search out of budget, no final read, no operations)
    3  ABORTED    no history worth checking: missing, unreadable or malformed
"""

import json
import pathlib
import sys

from .checker import check_paired
from .checker.ops import Paired, pair
from .history import HistoryError, load, read_meta
from .report import plots, timeline
from .report.summary import summarize

HISTORY_FILE = "history.jsonl"
EXIT_PASS, EXIT_VIOLATION, EXIT_UNKNOWN, EXIT_ABORTED = 0, 1, 2, 3
_EXIT_STATUS = {True: EXIT_PASS, False: EXIT_VIOLATION, "unknown": EXIT_UNKNOWN}


def check_main(directory) -> int:
    """Check the run saved in `directory` (or the history file itself) and report; the exit status above."""
    path = pathlib.Path(directory)
    history_path = path if path.is_file() else path / HISTORY_FILE
    try:
        meta, records = read_meta(history_path), load(history_path)
    except (OSError, HistoryError) as error:
        print(f"jepsen_lite check: {error}", file=sys.stderr)
        return EXIT_ABORTED
    paired = pair(records)
    result = check_paired(paired)
    write_report(history_path.parent, meta, paired, result)
    print(summarize(meta, result))
    return _EXIT_STATUS[result["valid"]]


def write_report(directory: pathlib.Path, meta: dict, paired: Paired, result: dict) -> None:
    (directory / "results.json").write_text(json.dumps({"meta": meta, **result}, indent=1, default=str) + "\n")
    title = f"jepsen_lite {meta.get('run', directory.name)}"
    (directory / "timeline.html").write_text(timeline.render(paired, result, title), encoding="utf-8")
    plots.write_latency(paired, directory / "latency-raw.png")
    plots.write_rate(paired, directory / "rate.png")
