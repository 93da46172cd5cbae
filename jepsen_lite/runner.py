"""One chaos run, in phases (jepsen.md §6): ns-setup -> cluster up -> warmup -> workload + nemesis -> heal ->
quiesce -> final reads -> check -> report.

Everything of a run lands in `<out>/<run-id>/`: `history.jsonl` (the §6.4 history), `nodes/<id>.log`,
`cluster/` (its cluster.toml and the nodes' data), `run.json` (what the harness did: phases and their seconds,
the fault windows as run, with election times, leader changes, what was skipped and why), and the report that
`checkcli.check_main` writes (`results.json`, `timeline.html`, `latency-raw.png`, `rate.png`).

Exit status: checkcli's (0 pass, 1 violation, 2 unknown), or 3 when the run aborted: a cut that did not take, a
node that would not restart, a harness thread that crashed, or leader faults that never moved the leadership.
A run that aborted proves nothing, so it never passes. A liveness failure (no leader for `leaderless_seconds_max`,
a fault window that found no leader to target, no leader after the heal) makes the run fail (1) even when the
checkers pass its history, and `run.json` lists it under "liveness".
"""

import dataclasses
import datetime
import json
import pathlib
import random
import subprocess
import threading
import time

from . import checkcli, nemesis
from .client import Answer, Client, perform
from .clock import Clock
from .cluster import Cluster, repo_root
from .errors import HarnessError, NemesisIneffective, WaitTimeout
from .history import History
from .net import Iptables
from .watch import LeaderWatch
from .workloads import Context, Worker
from .workloads import set as set_workload
from .workloads.register import Keys, RegisterWorker, read_register
from .workloads.session import SessionWorker
from .workloads.set import SetWorker

EXIT_ABORTED = checkcli.EXIT_ABORTED
quiesce_seconds = 3.0  # after the heal and a leader, before the final reads
nemesis_stop_seconds = 90.0  # the nemesis finishing its window (a restart takes up to ~60 s of waits)
worker_join_seconds = 15.0  # past the deadline: one request timeout plus the 412 retries, with margin
supervise_interval_seconds = 0.2
leaderless_seconds_max = 60.0  # no leader this long, faults or not, is a liveness failure: stop the workload
warmup_ok_per_second_min = 10.0  # etcd's robustness suite refuses results below its minimal QPS, too
recover_leader_seconds = 30.0
barrier_path = "/v1/secret/data/jl/final-barrier"  # a last write whose index every final read waits for


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    nodes: int
    seconds: float  # the workload phase, warmup included
    warmup_seconds: float
    fault_seconds: float
    recover_seconds: float
    register_workers: int  # pairs share a key: keep it even
    set_workers: int
    session_workers: int
    stagger_seconds: float  # mean pause between one worker's operations


PROFILES = {
    # 3 nodes, ~3 minutes of wall time on 2 cores with start-up and checking: 10 windows of 16 s after 10 s.
    # Two register workers per node, so that a paused or cut-off leader always has clients of its own.
    "quick": Profile("quick", 3, 170.0, 10.0, 8.0, 8.0, 6, 2, 2, 0.05),
    # 5 nodes, 10 minutes of workload: 29 windows of 20 s, every fault kind several times.
    "long": Profile("long", 5, 600.0, 10.0, 10.0, 10.0, 10, 2, 3, 0.05),
    # About a minute, for `make test`'s mutation run: 5 windows of 8 s after 3 s.
    "smoke": Profile("smoke", 3, 45.0, 3.0, 5.0, 3.0, 6, 2, 2, 0.05),
}


@dataclasses.dataclass(frozen=True)
class Options:
    profile: Profile
    seed: int
    out: pathlib.Path
    unsafe_stale_reads: bool = False
    faults: tuple[str, ...] | None = None  # None: every fault the node count and the machine allow


class Run:
    """The state of one run while it goes; `main` drives it through the phases."""

    def __init__(self, options: Options):
        self.options = options
        self.profile = options.profile
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.run_id = f"{stamp}-s{options.seed}" + ("-unsafe" if options.unsafe_stale_reads else "")
        self.directory = pathlib.Path(options.out) / self.run_id
        self.facts: dict = {"run": self.run_id, "seed": options.seed, "profile": self.profile.name,
                            "phases": {}, "unsafe_stale_reads": options.unsafe_stale_reads}
        self.clock = Clock(self.directory)
        self.cluster = Cluster(self.directory, self.profile.nodes, unsafe_stale_reads=options.unsafe_stale_reads,
                               node_environment=self.clock.node_environment)
        self.network = Iptables({n: node.host for n, node in self.cluster.nodes.items()},
                                {n: node.api_port for n, node in self.cluster.nodes.items()})
        self.watch = LeaderWatch({n: (node.host, node.api_port) for n, node in self.cluster.nodes.items()})
        faults = options.faults or nemesis.default_faults(self.profile.nodes, self.clock.available)
        self.windows = nemesis.plan(options.seed, list(self.cluster.node_ids), workload_seconds=self.profile.seconds,
                                    warmup_seconds=self.profile.warmup_seconds,
                                    fault_seconds=self.profile.fault_seconds,
                                    recover_seconds=self.profile.recover_seconds, faults=faults)
        self.directory.mkdir(parents=True, exist_ok=False)  # once the options are known to make a run
        self.history: History | None = None
        self.nemesis: nemesis.Nemesis | None = None
        self.workers: list[Worker] = []
        self.keys = Keys()
        self.stopping = threading.Event()

    def phase(self, name: str, started: float) -> None:
        self.facts["phases"][name] = round(time.monotonic() - started, 2)

    def say(self, text: str) -> None:
        print(f"[jepsen_lite {time.strftime('%H:%M:%S')}] {text}", flush=True)

    # --- phases ----------------------------------------------------------------------------------------------

    def cluster_up(self) -> None:
        started = time.monotonic()
        leader = self.cluster.bring_up()
        self.phase("cluster_up", started)
        self.say(f"{len(self.cluster.node_ids)} nodes up on {', '.join(self.cluster.describe().values())}; "
                 f"leader {leader} ({self.facts['phases']['cluster_up']:.1f}s)")

    def open_history(self) -> None:
        meta = {"run": self.run_id, "seed": self.options.seed, "profile": self.profile.name,
                "nodes": self.cluster.describe(), "workloads": ["register", "set", "session"],
                "net": "iptables-unshare", "jl_version": "0.1", "server_git": _server_git(),
                "unsafe_stale_reads": self.options.unsafe_stale_reads,
                "clock": "libfaketime" if self.clock.available else f"skipped: {self.clock.skipped}",
                "schedule": [{"fault": w.fault, "start_s": w.start_seconds, "fault_s": w.fault_seconds}
                             for w in self.windows]}
        self.history = History(self.directory / checkcli.HISTORY_FILE, meta)

    def workload(self) -> None:
        """Workers and nemesis until the deadline, or until something aborts the run."""
        started = time.monotonic()
        context = Context(self.history, self.cluster.root_token, dict(self.watch.nodes), self.watch,
                          started + self.profile.seconds, self.stopping, self.profile.stagger_seconds)
        self.workers = self._workers(context)
        self.nemesis = nemesis.Nemesis(self.cluster, self.network, self.clock, self.history, self.watch,
                                       self.windows, started_at=started)
        for worker in self.workers:
            worker.thread.start()
        self.nemesis.start()
        self.say(f"workload for {self.profile.seconds:g}s: {len(self.workers)} workers, {len(self.windows)} fault "
                 f"windows ({', '.join(w.fault for w in self.windows)})")
        warmed_up = False
        leaderless_since = None
        try:
            while time.monotonic() < context.deadline:
                if self.nemesis.aborted.is_set():
                    break
                leaderless_since = None if self.watch.leader() else leaderless_since or time.monotonic()
                if leaderless_since is not None and time.monotonic() - leaderless_since >= leaderless_seconds_max:
                    self.liveness(f"no leader for {leaderless_seconds_max:g}s from t="
                                  f"{leaderless_since - started:.1f}s of the workload: the workload stops early")
                    break
                if not warmed_up and time.monotonic() >= started + self.profile.warmup_seconds:
                    warmed_up = True
                    self._check_warmup(context.ok_count)
                crashed = [worker for worker in self.workers if worker.error is not None]
                if crashed:
                    raise HarnessError(f"worker {crashed[0].thread.name} crashed: {crashed[0].error!r}") \
                        from crashed[0].error
                time.sleep(supervise_interval_seconds)
        finally:
            self.stopping.set()
            self.nemesis.stop(nemesis_stop_seconds)
            for worker in self.workers:
                worker.thread.join(timeout=worker_join_seconds)
            self.facts["windows"] = self.nemesis.report
            for window in self.nemesis.report:
                if "skipped" in window:
                    self.liveness(f"{window['fault']} window skipped: {window['skipped']}")
            self.phase("workload", started)
        error = self.nemesis.error
        if isinstance(error, HarnessError):
            raise error
        if error is not None:
            raise HarnessError(f"the nemesis crashed: {error!r}") from error

    def _check_warmup(self, ok_count: int) -> None:
        """Before any fault: too few ok operations mean faults would be tested on a cluster doing nothing."""
        rate = ok_count / self.profile.warmup_seconds
        self.facts["warmup_ok_per_second"] = round(rate, 1)
        if rate < warmup_ok_per_second_min:
            raise HarnessError(f"only {rate:.1f} ok operations per second in the warmup (minimum "
                               f"{warmup_ok_per_second_min:g}): the results would not mean anything")

    def _workers(self, context: Context) -> list[Worker]:
        seeds = random.Random(self.options.seed ^ 0x5EED)
        nodes = list(self.cluster.node_ids)
        workers: list[Worker] = []
        for number in range(self.profile.register_workers):
            workers.append(RegisterWorker(context, number, nodes[number % len(nodes)], seeds.getrandbits(64),
                                          self.keys))
        for number in range(self.profile.set_workers):
            workers.append(SetWorker(context, number, nodes[number % len(nodes)], seeds.getrandbits(64)))
        for number in range(self.profile.session_workers):
            workers.append(SessionWorker(context, number, nodes[(number + 1) % len(nodes)], seeds.getrandbits(64)))
        return workers

    def heal(self) -> str:
        """Undo every fault the nemesis may have left, restart what is down; the leader."""
        started = time.monotonic()
        self.network.heal()
        self.cluster.resume_all()
        for node_id in self.cluster.node_ids:
            if not self.cluster.running(node_id):
                self.cluster.restart(node_id)
        for node_id in self.cluster.node_ids:
            self.clock.reset(node_id)
        try:
            leader = self.cluster.wait_for_leader(recover_leader_seconds)
        except WaitTimeout as error:
            self.liveness(f"after the heal: {error}")
            leader = None
        self.phase("heal", started)
        return leader

    def liveness(self, finding: str) -> None:
        """A liveness failure of the cluster (no leader when one was due): the run fails, but its history is
        still checked, since every operation in it is a fact."""
        self.facts.setdefault("liveness", []).append(finding)
        self.say(f"LIVENESS: {finding}")

    def final_reads(self, leader: str) -> None:
        """After a quiesce: a last write through the leader gives an index every node must reach; then the set is
        read on every node's own replica at that index, and every register key through the active node."""
        time.sleep(quiesce_seconds)
        started = time.monotonic()
        token = self._barrier_index(leader)
        context = Context(self.history, self.cluster.root_token, dict(self.watch.nodes), self.watch,
                          time.monotonic() + 3600, threading.Event(), 0.0)
        reader = Worker(context, 0, leader, 0)
        try:
            set_workload.final_reads(reader, list(self.cluster.node_ids), token)
            reader.rebind(leader)
            for key in self.keys.all:
                reader.operation("read", key, None, lambda key=key: read_register(reader.client, key))
        finally:
            reader.client.close()
        self.facts["final_index"] = token
        self.phase("final_reads", started)

    def _barrier_index(self, leader: str) -> str | None:
        node = self.cluster.nodes[leader]
        client = Client(node.host, node.api_port, self.cluster.root_token, timeout_seconds=10.0)
        try:
            answer = perform(client, "POST", barrier_path, {"data": {"v": self.run_id}})
        finally:
            client.close()
        if isinstance(answer, Answer) and answer.status == 200:
            return answer.index_token
        self.say(f"the final barrier write on {leader} failed ({answer}); final reads go without an index")
        return None

    def judge_faults(self) -> None:
        """Leader faults that never moved the leadership tested nothing: abort (jepsen.md §6.8)."""
        ran = [window for window in self.facts.get("windows", []) if "skipped" not in window]
        moved = [window for window in ran if window.get("new_leader")]
        led = [window for window in ran if window.get("target") and window["fault"] != "kill-partition"]
        self.facts["leader_changes"] = len(self.watch.changes())
        if led and not moved:
            raise NemesisIneffective(f"{len(led)} leader faults ran and no new leader was ever seen")

    def close(self) -> None:
        self.stopping.set()
        self.watch.stop()
        started = time.monotonic()
        self.cluster.stop_all()
        self.phase("stop", started)
        if self.history is not None:
            self.history.close()
        (self.directory / "run.json").write_text(json.dumps(self.facts, indent=1, default=str) + "\n")


def main(options: Options) -> int:
    """Run, check and report; the exit status. Call inside the network namespace."""
    began = time.monotonic()
    run = Run(options)
    run.say(f"run {run.run_id} in {run.directory} (seed {options.seed}; SEED={options.seed} replays the schedule)")
    if run.clock.skipped:
        run.say(f"clock faults skipped: {run.clock.skipped}")
    try:
        run.cluster_up()
        run.open_history()
        run.watch.start()
        run.workload()
        leader = run.heal()
        if leader is not None:
            run.final_reads(leader)
        run.judge_faults()
    except HarnessError as error:
        run.facts["aborted"] = str(error)
        run.say(f"ABORTED: {error}")
    except BaseException as error:  # a signal or a harness bug: the nodes still stop, and run.json says so
        run.facts["aborted"] = f"interrupted: {error!r}"
        raise
    finally:
        run.close()
    if "aborted" in run.facts:
        run.say(f"verdict ABORTED (exit {EXIT_ABORTED}): {run.facts['aborted']}; logs in {run.directory}/nodes")
        return EXIT_ABORTED
    started = time.monotonic()
    status = checkcli.check_main(run.directory)
    run.phase("check_and_report", started)
    if run.facts.get("liveness"):
        status = checkcli.EXIT_VIOLATION if status in (checkcli.EXIT_PASS, checkcli.EXIT_UNKNOWN) else status
        run.say(f"LIVENESS FAIL (exit {status}): " + "; ".join(run.facts["liveness"]))
    run.facts["total_seconds"] = round(time.monotonic() - began, 1)
    (run.directory / "run.json").write_text(json.dumps(run.facts, indent=1, default=str) + "\n")
    run.say(_faults_line(run.facts) + f"; wall time {run.facts['total_seconds']:.0f}s; phases "
            + ", ".join(f"{name} {seconds:g}s" for name, seconds in run.facts["phases"].items()))
    return status


def _faults_line(facts: dict) -> str:
    parts = []
    for window in facts.get("windows", []):
        if "skipped" in window:
            parts.append(f"{window['fault']} skipped ({window['skipped']})")
        elif window.get("election_seconds") is not None:
            parts.append(f"{window['fault']} {window['target']}->{window['new_leader']} "
                         f"{window['election_seconds']:.2f}s")
        else:
            parts.append(window["fault"] + (f" {window['target']} (no new leader seen)" if window.get("target")
                                            else ""))
    return "faults: " + ("; ".join(parts) or "none")


def _server_git() -> str | None:
    """The commit of the server under test, for the history's meta (read-only git)."""
    try:
        completed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True,
                                   timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None if completed.returncode == 0 else None
