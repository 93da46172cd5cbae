"""vaultd on Raft: the replicated Physical and the HighAvailability the core and the HTTP layer use.

Composition level (like app.py): the one place in vaultd that imports raft. It builds a RaftNode over the
node's store from cluster.toml, wraps ReplicatedPhysical so that raft's errors become vaultd's, and answers
the core's HA questions (is this node active, where is the active node, read barrier, index waits). It also:

- keeps the directory of servers (raft address -> node id and API URL): cluster.toml's nodes, plus records
  the leader writes under `_raft/config/servers/` when a node joins, so every node can reach any leader;
- refreshes the core's caches when replication applies another node's writes (`Core.invalidate`, in apply
  order, on the event loop), and reloads everything after a snapshot restore (`Core.after_restore`);
- runs the join handshake: a new node asks the active node, over HTTP, to add it; both sides prove they hold
  the cluster key with an HMAC over the request, checked in constant time, with a bounded clock skew.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import random
import time

import aiohttp
import msgpack

from raft import keyfile
from raft.backend import IndexNotReached, ReplicatedPhysical
from raft.command import Command, config_prefix, new_idempotency_id
from raft.errors import CommandRejected, NotLeader, ProposalTimeout, QueueFull, RaftError
from raft.node import RaftNode, RaftTiming
from storage.errors import SnapshotError

from .config import ClusterConfig, NodeConfig
from .core.ha import IndexNotPresent, StandbyWrite, write_tracker
from .sdk.errors import InternalError, InvalidRequest, TooManyRequests

logger = logging.getLogger(__name__)

servers_prefix = config_prefix + "servers/"
join_clock_skew_seconds = 60.0  # a join request or answer older (or newer) than this is refused
membership_timeout_seconds = 30.0
step_down_timeout_seconds = 10.0
sealed_leader_check_seconds = 1.0
index_wait_seconds = 2.0  # X-Vault-Index: how long a standby waits for the index before answering 412
healthy_contact_seconds = 10.0  # autopilot: a voter heard from within this is healthy (Vault's default)
cache_keys_prefixes = ("core/", "sys/policy/")  # physical keys whose change the core must hear about


class ClusterPhysical:
    """The Physical protocol over ReplicatedPhysical, with raft errors as vaultd errors.

    Reads come from the local replica. Before a waiting node has joined there is no raft node: reads see the
    empty store and writes raise StandbyWrite(None)."""

    def __init__(self, cluster: RaftCluster):
        self._cluster = cluster

    async def get(self, key: str) -> bytes | None:
        return self._cluster.store.get(key)

    async def list(self, prefix: str) -> list[str]:
        return self._cluster.store.list(prefix)

    async def put(self, key: str, value: bytes) -> int:
        return await self.transaction([("put", key, value)])

    async def delete(self, key: str) -> int:
        return await self.transaction([("delete", key, None)])

    async def transaction(self, ops) -> int:
        replicated = self._cluster.replicated
        if replicated is None:
            raise StandbyWrite(None)
        tracker = write_tracker.get()
        if tracker is not None and tracker.standby:  # read without a barrier: rerun the request on the active path
            raise StandbyWrite(self._cluster.leader_api_addr())
        with translated_raft_errors(self._cluster):
            return await replicated.transaction(ops)


@contextlib.contextmanager
def translated_raft_errors(cluster: RaftCluster):
    try:
        yield
    except NotLeader as error:
        raise StandbyWrite(error.leader_api_addr or cluster.leader_api_addr()) from None
    except QueueFull as error:
        raise TooManyRequests(str(error)) from None
    except ProposalTimeout as error:
        raise InternalError(f"raft: {error}") from None
    except CommandRejected as error:
        raise InvalidRequest(f"raft refused the write: {error.reason}") from None
    except RaftError as error:  # a stopped node (its store or journal failed)
        raise InternalError(f"raft: {error}") from None


class RaftCluster:
    """HighAvailability over one RaftNode; see the module doc."""

    enabled = True

    def __init__(self, config: ClusterConfig, node: NodeConfig, store, *, timing: RaftTiming | None = None):
        self.config = config
        self.me = node
        self.store = store
        self.key = keyfile.load(str(config.raft_key_file))
        self.scheme = "https" if config.listener.tls_cert_file is not None else "http"
        self.forwarding = config.request_forwarding  # "forward" or "redirect" (standby.py)
        self.timing = timing or RaftTiming(election_min_seconds=0.6, election_max_seconds=1.2)
        if config.unsafe_stale_reads:  # the test-only mutation: a cut-off leader keeps believing it leads
            self.timing = dataclasses.replace(self.timing, leader_fallback_seconds=3600.0)
        self.raft_dir = os.path.join(str(node.data_dir), "raft")
        os.makedirs(self.raft_dir, mode=0o700, exist_ok=True)
        self.node: RaftNode | None = None
        self.replicated: ReplicatedPhysical | None = None
        self.core = None  # set by the app once the core exists: invalidation target
        self._rng = random.Random(int.from_bytes(os.urandom(16), "big"))
        self._invalidations: asyncio.Queue | None = None
        self._invalidator: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._enqueued_index = 0
        self._processed_index = 0
        self._active_since = ""
        self._was_active = False

    # --- start and stop -----------------------------------------------------------------------------------

    @property
    def _members_file(self) -> str:
        return os.path.join(self.raft_dir, "members.json")

    def should_wait_for_join(self) -> bool:
        """A node outside the bootstrap set with no raft state of its own waits for sys/storage/raft/join."""
        return not self.me.bootstrap and not os.path.exists(self._members_file)

    async def start(self) -> None:
        """Start the raft node now, or leave it for a join. Call on the event loop that serves requests."""
        loop = asyncio.get_running_loop()
        self._invalidations = asyncio.Queue()
        self._invalidator = asyncio.create_task(self._invalidate_in_order(), name="vaultd-invalidations")
        self._watchdog = asyncio.create_task(self._hand_over_while_sealed(), name="vaultd-sealed-leader")
        self._loop = loop
        if self.should_wait_for_join():
            logger.info("node %s waits for sys/storage/raft/join", self.me.id)
            return
        if os.path.exists(self._members_file):
            with open(self._members_file) as file:
                partners = json.load(file)["members"]
        else:
            partners = [node.raft_addr for node in self.config.bootstrap_nodes]
        await asyncio.to_thread(self._start_node, partners)

    def _start_node(self, partners: list[str]) -> None:
        node = RaftNode(
            self.me.raft_addr, partners, self.key, self.store, os.path.join(self.raft_dir, "journal"),
            api_addrs=self._api_urls(), timing=self.timing, on_fatal=self._on_fatal,
            compaction_min_entries=self.config.raft_snapshot_threshold,
        )
        node.state_machine.observer = self._on_applied
        self.replicated = ReplicatedPhysical(node, self.store, self._rng, time.time)
        self.node = node

    def _on_fatal(self, error: BaseException) -> None:
        logger.critical("raft stopped on node %s: %s; this node must be restarted", self.me.id, error)

    async def stop(self) -> None:
        for task in (self._invalidator, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.node is not None:
            await asyncio.to_thread(self.node.close)

    # --- the directory of servers ------------------------------------------------------------------------

    def servers(self) -> dict[str, dict]:
        """raft address -> {node_id, api_addr}: cluster.toml's nodes, then the records of nodes that joined."""
        directory = {node.raft_addr: {"node_id": node.id, "api_addr": node.api_addr} for node in self.config.nodes}
        for name in self.store.list(servers_prefix):
            raw = self.store.get(servers_prefix + name)
            with contextlib.suppress(ValueError, TypeError, msgpack.UnpackException):
                record = msgpack.unpackb(raw, raw=False)
                directory[name] = {"node_id": str(record["node_id"]), "api_addr": str(record["api_addr"])}
        return directory

    def _api_urls(self) -> dict[str, str]:
        return {raft_addr: f"{self.scheme}://{entry['api_addr']}" for raft_addr, entry in self.servers().items()}

    def _node_id_of(self, raft_addr: str) -> str:
        return self.servers().get(raft_addr, {}).get("node_id", raft_addr)

    # --- HighAvailability ----------------------------------------------------------------------------------

    def is_active(self) -> bool:
        active = self.node is not None and self.node.is_leader()
        if active and not self._was_active:
            self._active_since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._was_active = active
        return active

    def is_performance_standby(self) -> bool:
        return self.node is not None and not self.node.is_leader() and self.node.leader_addr() is not None

    def leader_api_addr(self) -> str | None:
        leader = None if self.node is None else self.node.leader_addr()
        if leader is None:
            return None
        url = self._api_urls().get(leader)
        if url is not None:
            self.node.api_addrs.setdefault(leader, url)
        return url

    async def wait_for_leader(self, timeout: float | None = None) -> str | None:
        """During an election: the new active node's API URL once one is known (None if this node won, or
        after `timeout`, by default two maximal election timeouts)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (2 * self.timing.election_max_seconds if timeout is None else timeout)
        while not self.is_active() and loop.time() < deadline:
            leader = self.leader_api_addr()
            if leader is not None:
                return leader
            await asyncio.sleep(self.timing.tick_seconds)
        return self.leader_api_addr()

    def active_since(self) -> str:
        return self._active_since or "0001-01-01T00:00:00Z"

    def store_applied_index(self) -> int:
        return self.store.applied_index

    async def read_barrier(self) -> int:
        if self.replicated is None:
            raise StandbyWrite(None)
        with translated_raft_errors(self):
            return await self.replicated.read_barrier()

    async def begin_read(self):
        """See HighAvailability.begin_read. With the test-only `unsafe_stale_reads`, no barrier at all."""
        if self.config.unsafe_stale_reads:
            return _no_barrier
        term = self.node.settled_term() if self.node is not None else None
        barrier = asyncio.ensure_future(self.read_barrier())
        barrier.add_done_callback(_retrieve)
        if term is None:  # a new leader may not have applied the entries of earlier terms yet
            await barrier
            term = self.node.term

        async def confirm() -> None:
            await barrier
            if self.node.term != term:
                raise InternalError("raft leadership changed during the request; retry it")

        return confirm

    async def wait_for_index(self, index: int, timeout: float = index_wait_seconds) -> int:
        """Wait until `index` is applied here and the caches have heard of it; IndexNotPresent after `timeout`."""
        if self.replicated is None:
            raise IndexNotPresent()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            applied = await self.replicated.wait_for_index(index, timeout)
        except IndexNotReached:
            raise IndexNotPresent() from None
        while self._processed_index < min(index, self._enqueued_index):
            if loop.time() >= deadline:
                raise IndexNotPresent()
            await asyncio.sleep(0.002)
        return applied

    async def status(self) -> dict:
        if self.node is None:
            return {"raft_committed_index": 0, "raft_applied_index": self.store.applied_index}
        leader = self.node.leader_addr()
        return {
            "raft_committed_index": self.node.commit_index, "raft_applied_index": self.node.applied_index,
            "leader_cluster_address": f"{self.scheme}://{leader}" if leader else "",
        }

    async def step_down(self) -> None:
        self._require_active()
        with translated_raft_errors(self):
            await self.node.step_down(step_down_timeout_seconds)

    def _require_active(self) -> None:
        if not self.is_active():
            raise StandbyWrite(self.leader_api_addr())

    # --- operator endpoints ----------------------------------------------------------------------------------

    async def configuration(self) -> dict:
        self._require_active()
        servers = [
            {**server, "node_id": self._node_id_of(server["address"])} for server in self.node.configuration()
        ]
        return {"config": {"index": self.node.commit_index, "servers": servers}}

    async def remove_peer(self, server_id: str) -> None:
        self._require_active()
        matches = [addr for addr, entry in self.servers().items() if entry["node_id"] == server_id]
        members = {server["address"] for server in self.node.configuration()}
        targets = [addr for addr in matches if addr in members] or ([server_id] if server_id in members else [])
        if not targets:
            raise InvalidRequest(f"no raft server with id {server_id!r}")
        if targets[0] == self.me.raft_addr:
            raise InvalidRequest("the active node cannot remove itself; run sys/step-down first")
        with translated_raft_errors(self):
            await self.node.remove_peer(targets[0], membership_timeout_seconds)
            await self._propose_config([("delete", servers_prefix + targets[0], None)])

    async def autopilot_state(self) -> dict:
        self._require_active()
        status = await self.node.status()
        servers, healthy_voters = {}, 0
        for server in self.node.configuration():
            addr = server["address"]
            is_self = addr == self.me.raft_addr
            peer = status["peers"].get(addr, {})
            contact = 0.0 if is_self else peer.get("last_contact_seconds")
            healthy = is_self or (peer.get("connected", False) and contact is not None
                                  and contact < healthy_contact_seconds)
            healthy_voters += healthy
            node_id = self._node_id_of(addr)
            servers[node_id] = {
                "id": node_id, "name": node_id, "address": addr, "node_status": "alive" if healthy else "failed",
                "last_contact": _go_duration(contact), "last_term": status["term"],
                "last_index": status["last_index"] if is_self else peer.get("match_index", 0),
                "healthy": healthy, "stable_since": self.active_since(),
                "status": "leader" if is_self else "voter", "version": "", "meta": None,
            }
        quorum = len(servers) // 2 + 1
        return {
            "healthy": healthy_voters == len(servers), "failure_tolerance": max(0, healthy_voters - quorum),
            "leader": self.me.id, "voters": sorted(servers), "servers": servers,
        }

    async def export_snapshot(self, fileobj) -> None:
        """The store's export stream, after a read barrier (so it holds every acknowledged write)."""
        await self.read_barrier()
        await asyncio.to_thread(self.store.export_snapshot, fileobj)

    async def restore_snapshot(self, fileobj) -> int:
        self._require_active()
        try:
            with translated_raft_errors(self):
                return await self.replicated.restore(fileobj)
        except SnapshotError as error:
            raise InvalidRequest(f"the snapshot is damaged: {error}") from None

    async def _propose_config(self, ops) -> int:
        command = Command("config", ops, new_idempotency_id(self._rng), float(time.time()))
        return await self.replicated.propose(command)

    # --- joining -----------------------------------------------------------------------------------------

    def sign(self, body: dict) -> dict:
        body = {**body, "time": time.time()}
        return {**body, "mac": hmac.new(self.key, _canonical(body), hashlib.sha256).hexdigest()}

    def verify(self, body: object) -> dict:
        """The signed body without its mac; InvalidRequest (saying nothing more) when it is not genuine or stale."""
        if not isinstance(body, dict) or not isinstance(body.get("mac"), str):
            raise InvalidRequest("join refused")
        unsigned = {key: value for key, value in body.items() if key != "mac"}
        expected = hmac.new(self.key, _canonical(unsigned), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, body["mac"]):
            raise InvalidRequest("join refused")
        sent = unsigned.get("time")
        if not isinstance(sent, int | float) or abs(time.time() - sent) > join_clock_skew_seconds:
            raise InvalidRequest("join refused")
        return unsigned

    def join_request(self) -> dict:
        return self.sign({"node_id": self.me.id, "raft_addr": self.me.raft_addr, "api_addr": self.me.api_addr,
                          "nonce": os.urandom(16).hex()})

    async def admit(self, body: object) -> dict:
        """On the active node: add the node that sent this signed join request; the signed member list."""
        request = self.verify(body)
        self._require_active()
        node_id, raft_addr, api_addr = (str(request.get(key, "")) for key in ("node_id", "raft_addr", "api_addr"))
        if not node_id or not raft_addr or not api_addr:
            raise InvalidRequest("join refused: node_id, raft_addr and api_addr are required")
        clash = [addr for addr, entry in self.servers().items() if entry["node_id"] == node_id and addr != raft_addr]
        members = {server["address"] for server in self.node.configuration()}
        if any(addr in members for addr in clash):
            raise InvalidRequest(f"node id {node_id!r} is already used by another member")
        record = msgpack.packb({"node_id": node_id, "api_addr": api_addr}, use_bin_type=True)
        with translated_raft_errors(self):
            await self._propose_config([("put", servers_prefix + raft_addr, record)])
            self.node.api_addrs[raft_addr] = f"{self.scheme}://{api_addr}"
            if raft_addr not in members:
                await self.node.add_peer(raft_addr, membership_timeout_seconds)
        members = sorted({server["address"] for server in self.node.configuration()} | {raft_addr})
        return self.sign({"members": members, "nonce": request.get("nonce", "")})

    async def complete_join(self, answer: object, nonce: str) -> None:
        """On the new node: check the active node's signed answer, keep the member list, start raft."""
        members = self.verify(answer)
        if members.get("nonce") != nonce or not isinstance(members.get("members"), list):
            raise InvalidRequest("join refused: the answer does not match the request")
        if self.node is not None:
            return
        partners = [str(addr) for addr in members["members"]]
        _write_json_atomically(self._members_file, {"members": partners})
        await asyncio.to_thread(self._start_node, partners)

    async def _hand_over_while_sealed(self) -> None:
        """A sealed node cannot serve as the active node (every request would get 503), yet raft runs while
        sealed and may elect it. While it leads sealed, it hands leadership to a follower that reports itself
        unsealed, if there is one (before the operator unseals anyone, leadership stays where it is)."""
        while True:
            await asyncio.sleep(sealed_leader_check_seconds)
            if self.core is None or not self.core.barrier.sealed or not self.is_active():
                continue
            target = await self._unsealed_follower()
            if target is None:
                continue
            try:
                await self.node.step_down(step_down_timeout_seconds, target)
                logger.info("node %s is sealed: handed raft leadership to %s", self.me.id, target)
            except RaftError as error:
                logger.warning("a sealed leader could not hand over to %s: %s", target, error)

    async def _unsealed_follower(self) -> str | None:
        """The raft address of a member whose sys/health says it is unsealed, or None."""
        members = {server["address"] for server in self.node.configuration()} - {self.me.raft_addr}
        urls = self._api_urls()
        host = self.me.api_addr.rpartition(":")[0]
        timeout = aiohttp.ClientTimeout(total=sealed_leader_check_seconds)
        connector = aiohttp.TCPConnector(local_addr=(host, 0))
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for raft_addr in sorted(members):
                if raft_addr not in urls:
                    continue
                try:
                    async with session.get(urls[raft_addr] + "/v1/sys/health?standbyok=true") as answer:
                        health = await answer.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    continue
                if isinstance(health, dict) and health.get("sealed") is False:
                    return raft_addr
        return None

    # --- replication events ------------------------------------------------------------------------------

    def _on_applied(self, index: int, command: Command) -> None:
        """Tick thread: hand other nodes' cache-relevant writes, and every restore, to the event loop in order."""
        if command.kind == "restore":
            item = (index, None)
        elif command.kind == "write" and command.idempotency_id not in self.replicated.own_ids:
            keys = [key for _, key, _ in command.ops if key.startswith(cache_keys_prefixes)]
            if not keys:
                return
            item = (index, keys)
        else:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is stopping
            self._loop.call_soon_threadsafe(self._enqueue, item)

    def _enqueue(self, item: tuple[int, list[str] | None]) -> None:
        self._enqueued_index = max(self._enqueued_index, item[0])
        self._invalidations.put_nowait(item)

    async def _invalidate_in_order(self) -> None:
        while True:
            index, keys = await self._invalidations.get()
            try:
                if self.core is not None:
                    await (self.core.after_restore() if keys is None else self.core.invalidate(keys))
            except Exception:
                logger.exception("refreshing the caches after raft index %d failed", index)
            self._processed_index = max(self._processed_index, index)


async def _no_barrier() -> None:
    return None


def _retrieve(future: asyncio.Future) -> None:
    """A barrier whose request failed before confirming must not log 'exception never retrieved'."""
    if not future.cancelled():
        future.exception()


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _go_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.2f}ms" if seconds < 1 else f"{seconds:.3f}s"


def _write_json_atomically(path: str, document: dict) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w") as file:
        json.dump(document, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
