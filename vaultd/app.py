"""The composition root: reads the configuration, builds storage → physical → barrier → core → http, and
owns start-up and shut-down order. The only place that makes a real clock and real randomness."""

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import ssl
import tempfile

from aiohttp import web

from storage import LogStore

from . import limits
from .clock import SystemClock
from .cluster import ClusterPhysical, RaftCluster
from .config import ClusterConfig, NodeConfig
from .core.core import Core, LogicalRequest, NodeInfo
from .core.ha import StandbyWrite
from .core.physical import LocalPhysical
from .core.pkcs11_seal import Pkcs11Wrapper
from .core.seal import SealUnavailable
from .engines.auth.approle import approle_backend
from .engines.auth.userpass import userpass_backend
from .engines.kv import kv_v1_backend, kv_v2_backend
from .engines.transit import transit_backend
from .http.metrics import METRICS
from .http.server import make_app
from .sdk.request import Operation

logger = logging.getLogger("vaultd")


def engine_catalog() -> dict:
    """Secret engine types by name: a factory taking the mount's options."""
    return {
        "kv": lambda options: kv_v2_backend() if str((options or {}).get("version")) == "2" else kv_v1_backend(),
        "transit": lambda options: transit_backend(),
    }


def auth_catalog() -> dict:
    """Auth method types by name: a factory taking the mount's options."""
    return {"approle": lambda options: approle_backend(), "userpass": lambda options: userpass_backend()}


@dataclasses.dataclass
class Server:
    core: Core
    store: LogStore
    runner: web.AppRunner
    cluster: RaftCluster | None = None


async def build(data_dir: str, api_addr: str, cluster_name: str = "vaultd") -> Server:
    """One node without replication (dev mode): open the store, build the core and the HTTP application."""
    store = await asyncio.to_thread(LogStore.open, data_dir)
    physical = LocalPhysical(store)
    core = Core(physical, SystemClock(), os.urandom, NodeInfo(cluster_name, f"http://{api_addr}"),
                engines=engine_catalog(), auth_methods=auth_catalog())
    app = make_app(core)
    physical.observe_apply = app[METRICS].observe_apply
    return Server(core, store, await _runner(app))


async def build_cluster_node(config: ClusterConfig, node: NodeConfig, **raft_options) -> Server:
    """A Raft member from cluster.toml: store → raft → barrier → core → http. Raft starts here (or waits for
    a join); nothing listens on the API yet."""
    store = await asyncio.to_thread(LogStore.open, os.path.join(str(node.data_dir), "store"))
    try:
        cluster = RaftCluster(config, node, store, **raft_options)
        scheme = cluster.scheme
        hsm = Pkcs11Wrapper(config.seal) if config.seal.type == "pkcs11" else None
        core = Core(ClusterPhysical(cluster), SystemClock(), os.urandom,
                    NodeInfo(config.name, f"{scheme}://{node.api_addr}", storage_type="raft"),
                    engines=engine_catalog(), auth_methods=auth_catalog(), ha=cluster,
                    hsm=hsm, hsm_disabled=config.seal.disabled)
        cluster.core = core
        await cluster.start()
    except BaseException:
        await asyncio.to_thread(store.close)
        raise
    return Server(core, store, await _runner(make_app(core)), cluster)


async def _runner(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner


async def serve(server: Server, listen: str, tls: tuple | None = None) -> None:
    host, _, port = listen.rpartition(":")
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
    await web.TCPSite(server.runner, host, int(port), ssl_context=context).start()


async def stop(server: Server) -> None:
    await server.runner.cleanup()
    if server.cluster is not None:
        await server.cluster.stop()
    await asyncio.to_thread(server.store.close)


async def maintain(core: Core) -> None:
    """The expiration manager and the encryption-count save, forever; a failed pass is logged, not fatal."""
    while True:
        await asyncio.sleep(limits.maintenance_interval_seconds)
        try:
            revoked = await core.maintenance_pass()
        except StandbyWrite:  # leadership moved during the pass: the new active node runs its own
            logger.info("maintenance pass stopped: this node is no longer the active node")
            continue
        except Exception:
            logger.exception("maintenance pass failed; retrying next interval")
            continue
        if revoked:
            logger.info("revoked %d expired tokens", revoked)


async def _until_signalled() -> None:
    """Wait for SIGTERM or SIGINT, so that shut-down closes the store cleanly (hints written, lock freed)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopping.set)
    await stopping.wait()
    logger.info("shutting down")


async def auto_unseal(core: Core) -> None:
    """An auto seal unseals the node by itself, at start and after a restart, and keeps trying while the HSM
    fails: one log line per new cause, retries backing off to `limits.auto_unseal_backoff_max_seconds`. Once
    the HSM is back the node unseals without a restart. Nothing to do for a Shamir seal."""
    delay, last_cause = limits.auto_unseal_interval_seconds, ""
    while True:
        try:
            if await core.auto_unseal():
                logger.info("unsealed through the %s seal", core.seal.type)
            delay, last_cause = limits.auto_unseal_interval_seconds, ""
        except SealUnavailable as error:
            cause = str(error)
            if cause != last_cause:
                logger.error("auto-unseal failed, node stays sealed: %s; retrying with backoff", cause)
            delay, last_cause = min(delay * 2, limits.auto_unseal_backoff_max_seconds), cause
        except Exception:
            logger.exception("auto-unseal failed; retrying")
            delay = min(delay * 2, limits.auto_unseal_backoff_max_seconds)
        await asyncio.sleep(delay)


@contextlib.asynccontextmanager
async def running(server: Server):
    """Serve until cancelled, with the maintenance and auto-unseal tasks alongside; stop in reverse order."""
    tasks = [asyncio.create_task(maintain(server.core), name="vaultd-maintenance"),
             asyncio.create_task(auto_unseal(server.core), name="vaultd-auto-unseal")]
    try:
        yield server
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await stop(server)


async def run_node(config: ClusterConfig, node: NodeConfig) -> None:
    tls = None
    if config.listener.tls_cert_file is not None:
        tls = (str(config.listener.tls_cert_file), str(config.listener.tls_key_file))
    os.makedirs(node.data_dir, mode=0o700, exist_ok=True)
    server = await build_cluster_node(config, node)
    await serve(server, node.api_addr, tls)
    print(f"vaultd node {node.id} listening on {'https' if tls else 'http'}://{node.api_addr}", flush=True)
    async with running(server):
        await _until_signalled()


async def run_dev(root_token_id: str | None, listen: str) -> None:
    """Vault's dev mode: one node in a temporary dir, initialised, unsealed, KV v2 at secret/."""
    with tempfile.TemporaryDirectory(prefix="vaultd-dev-") as data_dir:
        server = await build(data_dir, listen, "vaultd-dev")
        core = server.core
        keys = await core.initialize({"secret_shares": 1, "secret_threshold": 1})
        await core.unseal(bytes.fromhex(keys["keys"][0]))
        token = keys["root_token"]
        if root_token_id:
            token = await _replace_root_token(core, token, root_token_id)
        await core.handle(LogicalRequest(Operation.UPDATE, "sys/mounts/secret",
                                         {"type": "kv", "options": {"version": "2"}}, token))
        await serve(server, listen)
        print(_dev_banner(listen, keys["keys_base64"][0], token), flush=True)
        async with running(server):
            await _until_signalled()


async def _replace_root_token(core: Core, token: str, wanted: str) -> str:
    await core.tokens.create_root_token(token_id=wanted)
    with contextlib.suppress(Exception):
        await core.tokens.revoke_tree(token)
    return wanted


def _dev_banner(listen: str, unseal_key: str, token: str) -> str:
    return (
        "WARNING! dev mode is enabled! In this mode, vaultd runs entirely in a temporary directory,\n"
        "with one unseal key and the root token printed here. Never use it for real secrets.\n\n"
        f"    export VAULT_ADDR='http://{listen}'\n\n"
        f"Unseal Key: {unseal_key}\nRoot Token: {token}\n"
    )
