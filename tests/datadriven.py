"""Data-driven scenario files, after etcd-io/raft's `datadriven`.

A scenario file opens with a paragraph saying what it proves, then lists cases separated by blank lines:

    # a comment
    command arg arg
    ----
    the exact expected output

The handler turns a command into output text. `REWRITE=1 pytest ...` rewrites every expected output from
what the code now does (review the diff before committing it); otherwise any difference fails the test
with the file, line and both outputs.
"""

import dataclasses
import os
import pathlib
from collections.abc import Callable

separator = "----"


@dataclasses.dataclass
class Case:
    line: int
    comments: list[str]
    command: str
    expected: str


def parse(text: str) -> tuple[str, list[Case]]:
    """(the opening paragraph, the cases)."""
    blocks, current, start = [], [], 0
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            blocks.append((start, current))
            current = []
    if current:
        blocks.append((start, current))
    preamble, cases = blocks[0][1], []
    for start, lines in blocks[1:]:
        comments = [line for line in lines if line.startswith("#")]
        lines = [line for line in lines if not line.startswith("#")]
        if separator not in lines:
            raise ValueError(f"line {start}: a case needs a '{separator}' line")
        split = lines.index(separator)
        cases.append(Case(start, comments, "\n".join(lines[:split]), "\n".join(lines[split + 1 :])))
    return "\n".join(preamble), cases


def run(path: pathlib.Path, handle: Callable[[str], str]) -> None:
    preamble, cases = parse(path.read_text())
    rewrite = os.environ.get("REWRITE") == "1"
    failures = []
    for case in cases:
        actual = handle(case.command).rstrip("\n") or "<empty>"
        if actual != case.expected:
            failures.append(f"{path.name}:{case.line}: {case.command}\nexpected:\n{case.expected}\ngot:\n{actual}")
        case.expected = actual
    if rewrite:
        body = "\n\n".join(
            "\n".join([*case.comments, case.command, separator, case.expected]) for case in cases
        )
        path.write_text(f"{preamble}\n\n{body}\n")
        return
    assert not failures, "\n\n".join(failures)
