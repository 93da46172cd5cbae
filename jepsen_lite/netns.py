"""A private network namespace for the whole run: `unshare -rn --pid --fork --kill-child`.

Inside it (jepsen.md §4 (i′)) the run has its own loopback, on which every 127.0.0.x address is local, and its
own iptables: the partitions never touch the host's rules, and they vanish with the namespace. `--pid --fork`
makes the inner harness pid 1 of a new pid namespace, so when it exits, for any reason, the kernel kills every
vaultd node it started: a crashed run cannot leave nodes or rules behind.

Python 3.11 has no os.unshare, so `python -m jepsen_lite run` starts itself again under `unshare`, with an
environment marker that tells the inner process it is inside, and waits for it. `unshare --fork` ignores SIGINT
and SIGTERM, so the outer process passes them on to the inner harness (which then stops its nodes and exits);
if the inner harness is still there `grace_seconds` later, SIGKILL of `unshare` (--kill-child) takes the whole
namespace down.
"""

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from .errors import NamespaceError

ENVIRONMENT_MARKER = "JEPSEN_LITE_NETNS"  # "1" in the inner process
unshare_arguments = ("-rn", "--pid", "--fork", "--kill-child")
command_timeout_seconds = 30.0
grace_seconds = 30.0  # after a forwarded signal, before SIGKILL
poll_seconds = 0.5


def inside() -> bool:
    return os.environ.get(ENVIRONMENT_MARKER) == "1"


def run_inside(argv: list[str]) -> int:
    """Run `python -m jepsen_lite ARGV` in a fresh namespace and return its exit status."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise NamespaceError("`unshare` (util-linux) is not installed: jepsen_lite runs its cluster in a private "
                             "network namespace and cannot partition without one")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            raise NamespaceError(f"`{tool}` is not installed (apt-get install iproute2 iptables)")
    environment = {**os.environ, ENVIRONMENT_MARKER: "1"}
    command = [unshare, *unshare_arguments, "--", sys.executable, "-m", "jepsen_lite", *argv]
    process = subprocess.Popen(command, env=environment)
    interrupted: list[int] = []

    def forward(signal_number, frame):
        interrupted.append(signal_number)
        for pid in _children(process.pid):
            _signal(pid, signal.SIGTERM)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    deadline = None
    try:
        while True:
            try:
                status = process.wait(timeout=poll_seconds)
                break
            except subprocess.TimeoutExpired:
                if interrupted and deadline is None:
                    deadline = time.monotonic() + grace_seconds
                if deadline is not None and time.monotonic() >= deadline:
                    process.kill()  # --kill-child: the inner harness and every node go with it
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 128 - status if status < 0 else status


def _children(pid: int) -> list[int]:
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def set_up() -> None:
    """Inside the namespace: bring up loopback, and make SIGTERM and SIGHUP exit (pid 1 ignores signals it has
    no handler for, so without this a SIGTERM would do nothing)."""
    if not inside():
        raise NamespaceError(f"set_up() outside the namespace ({ENVIRONMENT_MARKER} is not set)")
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, text=True,
                       timeout=command_timeout_seconds)
        subprocess.run(["iptables", "-w", "-F", "OUTPUT"], check=True, capture_output=True, text=True,
                       timeout=command_timeout_seconds)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or ""
        raise NamespaceError(f"cannot set up the network namespace: {error} {detail}".strip()) from None


def _exit_on_signal(signal_number, frame):
    raise SystemExit(128 + signal_number)
