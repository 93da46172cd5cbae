"""Network partitions between nodes: grudges, iptables inside the run's namespace, and proof that a cut took effect.

A grudge maps each node to the set of nodes whose packets it refuses, as Jepsen's nemesis.clj does; every grudge
built here is symmetric. `Iptables.cut` turns it into one rule per directed edge, `iptables -w -A OUTPUT -s A -d B
-j DROP` (loopback packets pass OUTPUT once, so a DROP there loses them; jepsen.md §4 (i′)), and `heal` flushes
the chain. The harness (127.0.0.1) is in no rule, so it keeps reaching every node.

A fault that did not happen can never yield a pass, so after every cut and every heal `verify` probes every
ordered pair of nodes with a TCP connect bound to the source node's address towards the destination's API port:
an edge in the grudge must time out, every other must get through (a connection, or a refusal: a RST that came
back proves the link is up even when the node is down). A mismatch raises NemesisIneffective and aborts the run.
"""

import concurrent.futures
import random
import socket
import subprocess

from .errors import NemesisIneffective

iptables_timeout_seconds = 30.0
probe_timeout_seconds = 0.5  # a DROP makes connect hang; a live loopback link answers in well under 1 ms
probe_attempts = 2  # a "cut" link must time out on every attempt; an "up" link must get through on one


# --- grudges ---------------------------------------------------------------------------------------------------


def complete_grudge(components: list[list[str]]) -> dict[str, set[str]]:
    """Every node refuses every node outside its own component (Jepsen's complete-grudge)."""
    everyone = {node for component in components for node in component}
    return {node: everyone - set(component) for component in components for node in component}


def isolate(node: str, nodes: list[str]) -> dict[str, set[str]]:
    """`node` alone against the rest (Jepsen's split-one)."""
    return complete_grudge([[node], [other for other in nodes if other != node]])


def bisect(nodes: list[str]) -> list[list[str]]:
    """Two halves, the smaller first (3 nodes: 1 | 2)."""
    middle = len(nodes) // 2
    return [list(nodes[:middle]), list(nodes[middle:])]


def random_halves(nodes: list[str], rng: random.Random) -> dict[str, set[str]]:
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    return complete_grudge(bisect(shuffled))


def majorities_ring(nodes: list[str], rng: random.Random) -> dict[str, set[str]]:
    """Every node sees a majority, and no two nodes see the same one: in a shuffled ring, each node keeps its
    links to its nearest neighbours on either side and refuses the rest (Jepsen's majorities-ring; for 5 nodes
    each sees itself and one neighbour each side). Needs 5 nodes or more: with 3, every majority is everyone."""
    if len(nodes) < 5:
        raise ValueError(f"majorities_ring needs 5 nodes or more, not {len(nodes)}")
    ring = list(nodes)
    rng.shuffle(ring)
    count = len(ring)
    reach = (count // 2 + 1) // 2  # neighbours kept on each side: 1 + 2 * reach >= a majority
    grudge = {}
    for index, node in enumerate(ring):
        seen = {ring[(index + offset) % count] for offset in range(-reach, reach + 1)}
        grudge[node] = set(ring) - seen
    return grudge


def edges(grudge: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The directed links the grudge cuts, as (source, destination): packets from a refused node are dropped,
    and every grudge here is symmetric, so both directions of a refused pair are cut."""
    cut = set()
    for node, refused in grudge.items():
        for other in refused:
            cut.add((other, node))
            cut.add((node, other))
    return cut


def components(grudge: dict[str, set[str]]) -> list[list[str]]:
    """For the history and the report: the groups of nodes that still see each other, when the grudge is a
    complete one (a ring has none: each node is listed with what it sees)."""
    seen: list[list[str]] = []
    for node in sorted(grudge):
        group = sorted(other for other in grudge if other not in grudge[node])
        if group not in seen:
            seen.append(group)
    return seen


# --- iptables ---------------------------------------------------------------------------------------------------


class Iptables:
    """Cuts and heals links between nodes on their 127.0.0.x addresses, inside the run's network namespace."""

    def __init__(self, hosts: dict[str, str], api_ports: dict[str, int]):
        self.hosts = dict(hosts)  # node id -> its IP
        self.api_ports = dict(api_ports)

    def cut(self, grudge: dict[str, set[str]]) -> list[str]:
        """Add a DROP rule per cut directed link; the rules as run. The caller then proves it with `verify`."""
        rules = []
        for source, destination in sorted(edges(grudge)):
            rules.append(_iptables("-A", "OUTPUT", "-s", self.hosts[source], "-d", self.hosts[destination],
                                   "-j", "DROP"))
        return rules

    def heal(self) -> None:
        """Flush every rule, and prove every link is up again."""
        _iptables("-F", "OUTPUT")
        self.verify({node: set() for node in self.hosts})

    def verify(self, grudge: dict[str, set[str]]) -> None:
        """Probe every ordered pair of nodes; raise NemesisIneffective unless exactly the grudge's links are cut."""
        cut = edges(grudge)
        pairs = [(source, destination) for source in self.hosts for destination in self.hosts if source != destination]
        with concurrent.futures.ThreadPoolExecutor(len(pairs)) as pool:
            through = dict(zip(pairs, pool.map(lambda pair: self.gets_through(*pair), pairs), strict=True))
        leaks = sorted(pair for pair in pairs if pair in cut and through[pair])
        blocked = sorted(pair for pair in pairs if pair not in cut and not through[pair])
        if leaks or blocked:
            raise NemesisIneffective(
                "the network is not as the grudge says: "
                + (f"cut links that still connect: {_arrows(leaks)}; " if leaks else "")
                + (f"links that should be up but time out: {_arrows(blocked)}" if blocked else ""))

    def gets_through(self, source: str, destination: str) -> bool:
        """Whether a TCP connect from `source`'s address reaches `destination`'s API port (a refusal counts: the
        RST came back). A link counts as cut only if every attempt times out."""
        for _ in range(probe_attempts):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(probe_timeout_seconds)
                probe.bind((self.hosts[source], 0))
                try:
                    probe.connect((self.hosts[destination], self.api_ports[destination]))
                    return True
                except ConnectionRefusedError:
                    return True
                except OSError:
                    continue
        return False


def _iptables(*arguments: str) -> str:
    command = ["iptables", "-w", *arguments]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=iptables_timeout_seconds)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or ""
        raise NemesisIneffective(f"{' '.join(command)} failed: {error} {detail}".strip()) from None
    return " ".join(command)


def _arrows(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{source}->{destination}" for source, destination in pairs)
