"""`python -m jepsen_lite run|check`: the chaos suite's command line.

    run    [--profile quick|long|smoke] [--seed N] [--nodes N] [--seconds S] [--out DIR] [--unsafe-stale-reads]
           [--faults F,F,...]
           starts itself again in a private network namespace, runs a cluster of real vaultd nodes through the
           seeded faults, checks the history and writes the report under DIR/<run-id>/
    check  DIR
           re-checks a saved run (DIR/history.jsonl) offline and rewrites its report

Exit status: 0 pass, 1 a violation, 2 unknown (a checker could not decide), 3 aborted (no verdict: a fault that
did not take, a node that would not start, a history that cannot be read). Anything but 0 fails CI.
"""

import argparse
import dataclasses
import os
import pathlib
import sys
import traceback

from . import checkcli, nemesis, netns, runner
from .errors import HarnessError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jepsen_lite", description="Chaos tests of a vaultd cluster.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a cluster through faults, check and report")
    run.add_argument("--profile", choices=sorted(runner.PROFILES), default="quick")
    run.add_argument("--seed", type=int, help="the schedule's seed (default: random, printed)")
    run.add_argument("--nodes", type=int, help="node count (default: the profile's)")
    run.add_argument("--seconds", type=float, help="workload seconds, warmup included (default: the profile's)")
    run.add_argument("--out", default="store", help="runs are written to OUT/<run-id>/ (default: store)")
    run.add_argument("--unsafe-stale-reads", action="store_true",
                     help="TEST ONLY: the nodes skip their read barrier (the mutation the suite must catch)")
    run.add_argument("--faults", help=f"comma-separated subset of: {', '.join(nemesis.ALL_FAULTS)}")
    check = commands.add_parser("check", help="re-check a saved run")
    check.add_argument("directory", help="a run's directory (or its history.jsonl)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    arguments = _parser().parse_args(argv)
    if arguments.command == "check":
        return checkcli.check_main(arguments.directory)
    try:
        if not netns.inside():
            return netns.run_inside(argv)
        netns.set_up()
        return runner.main(_options(arguments))
    except (HarnessError, ValueError) as error:
        print(f"jepsen_lite: {error}", file=sys.stderr)
        return runner.EXIT_ABORTED
    except KeyboardInterrupt:
        print("jepsen_lite: interrupted: ABORTED", file=sys.stderr)
        return runner.EXIT_ABORTED
    except Exception:  # a harness bug is no verdict; never let it look like exit 1 (violation)
        traceback.print_exc()
        print("jepsen_lite: the harness crashed: ABORTED", file=sys.stderr)
        return runner.EXIT_ABORTED


def _options(arguments: argparse.Namespace) -> runner.Options:
    profile = runner.PROFILES[arguments.profile]
    if arguments.nodes is not None:
        profile = dataclasses.replace(profile, nodes=arguments.nodes)
    if arguments.seconds is not None:
        profile = dataclasses.replace(profile, seconds=arguments.seconds)
    seed = arguments.seed if arguments.seed is not None else int.from_bytes(os.urandom(4), "big")
    faults = tuple(fault.strip() for fault in arguments.faults.split(",")) if arguments.faults else None
    return runner.Options(profile, seed, pathlib.Path(arguments.out).resolve(), arguments.unsafe_stale_reads, faults)


if __name__ == "__main__":
    sys.exit(main())
