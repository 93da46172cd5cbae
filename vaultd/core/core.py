"""Core: the state gate, then token → ACL → audit → router → engine → audit, for every logical request.

States: uninitialised → sealed → unsealed (only `_become_*` change them). While sealed or uninitialised every
logical path answers 503 "Vault is sealed", as Vault does. The ACL check comes before routing, so an
unauthorised request for a path that does not exist is refused (403), not told it is missing.
"""

import dataclasses
import functools
import os
from collections.abc import Callable

from ..clock import Clock
from ..sdk import errors
from ..sdk.backend import Backend
from ..sdk.request import Operation, Request, Response
from . import seal as seal_module
from . import seal_migration
from .audit import AUDIT_PATH, AuditBroker
from .barrier import KEYRING_PATH, ROOT_KEY_PATH, Barrier
from .generate_root import GenerateRoot
from .ha import HighAvailability, Standalone
from .leases import LeaseStore
from .logins import issue_login_token
from .mounts import AUTH_PATH, MOUNTS_PATH, MountEntry, Router, decode_table, encode_table
from .physical import Physical
from .policy_store import PolicyStore
from .rekey import Rekey
from .seal import RECOVERY_CONFIG_PATH, SEAL_CONFIG_PATH
from .tokens import TokenStore
from .view import BarrierView
from .wrapping import Wrapping, parse_wrap_ttl

version = "1.15.0+vaultd"
EngineFactory = Callable[[dict | None], Backend]
TOKEN_SALT_PATH = "core/token-salt"
POLICY_PREFIX = "sys/policy/"  # PolicyStore's view
# Logical paths served without a token (Vault's PathsSpecial.Unauthenticated); each checks what it must.
unauthenticated_prefixes = ("sys/internal/ui/mounts", "sys/wrapping/lookup")


@functools.cache
def _sudo_patterns() -> tuple[frozenset[str], tuple[str, ...]]:
    """system.sudo_paths split once into exact paths and `*` prefixes (imported late: system imports core)."""
    from .system import sudo_paths

    exact = frozenset(path for path in sudo_paths if not path.endswith("*"))
    return exact, tuple(path[:-1] for path in sudo_paths if path.endswith("*"))


def _is_login(mount: MountEntry | None, path: str) -> bool:
    """Auth methods' login paths are served without a token (Vault's PathsSpecial.Unauthenticated)."""
    if mount is None or mount.table != "auth" or mount.type == "token":
        return False
    relative = path[len(mount.path) :]
    return relative == "login" or relative.startswith("login/")


@dataclasses.dataclass
class LogicalRequest:
    operation: Operation
    path: str
    data: dict
    token: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    remote_address: str = ""


@dataclasses.dataclass
class LogicalResult:
    request_id: str
    response: Response | None
    mount_type: str
    wrap_info: dict | None = None  # set when the response was wrapped; then `response` is not sent


@dataclasses.dataclass
class NodeInfo:
    cluster_name: str = "vaultd"
    api_addr: str = ""
    storage_type: str = "logstore"


class Core:
    def __init__(
        self,
        physical: Physical,
        clock: Clock,
        randbytes: Callable[[int], bytes] = os.urandom,
        node: NodeInfo | None = None,
        engines: dict[str, EngineFactory] | None = None,
        auth_methods: dict[str, EngineFactory] | None = None,
        ha: HighAvailability | None = None,
        hsm: seal_module.SealWrapper | None = None,
        hsm_disabled: bool = False,
    ):
        """`hsm`: the PKCS#11 key of a `[seal] type = "pkcs11"` table; with `hsm_disabled` (the table says
        `disabled = true`) the node runs a Shamir seal and the HSM only serves the migration away from it."""
        self.physical = physical
        self.ha = ha or Standalone()
        self.clock = clock
        self.randbytes = randbytes
        self.node = node or NodeInfo()
        self.engines = engines or {}  # secret engine type -> factory(options); injected by the app
        self.auth_methods = auth_methods or {}  # auth method type -> factory(options); injected by the app
        self.barrier = Barrier(physical, clock)
        self.seal = seal_module.ShamirSeal(self.barrier, randbytes)
        self.migrate_from: seal_module.AutoSeal | None = None  # the disabled pkcs11 seal being migrated away from
        if hsm is not None and not hsm_disabled:
            self.seal = seal_module.AutoSeal(self.barrier, hsm, randbytes)
        elif hsm is not None:
            self.migrate_from = seal_module.AutoSeal(self.barrier, hsm, randbytes)
        self.sealed_by_operator = False  # sys/seal: an auto seal stays sealed until recovery keys or a restart
        self.pending_migration: list | None = None  # a seal migration's writes, until the active node makes them
        self.router: Router | None = None
        self.tokens: TokenStore | None = None
        self.policies: PolicyStore | None = None
        self.leases: LeaseStore | None = None
        self.wrapping: Wrapping | None = None
        self.audit = AuditBroker(clock)
        self.cluster_id = ""
        self.token_count: int | None = None  # counted by each maintenance pass; a metric, not a limit
        self.rekey = Rekey(self)  # sys/rekey/*: replaces the unseal keys
        self.rekey_recovery = Rekey(self, target="recovery")  # sys/rekey-recovery-key/*: auto seals
        self.generate_root = GenerateRoot(self)  # sys/generate-root/*

    # --- identifiers ------------------------------------------------------------------------------------

    def new_request_id(self) -> str:
        return seal_module.format_uuid(self.randbytes(16))

    # --- init and seal -----------------------------------------------------------------------------------

    async def is_initialized(self) -> bool:
        return (self.seal.config or await self.seal.load_config()) is not None

    async def initialize(self, body: dict) -> dict:
        """sys/init: make the keys, set up the vault once (mounts, root token), and leave it sealed."""
        from .system_init import initialize

        return await initialize(self, body)

    async def seal_status(self) -> dict:
        config = await self.seal.load_config() if self.seal.config is None else self.seal.config
        migration = config is not None and await seal_migration.pending(self) is not None
        quorum = (await seal_migration.old_seal_config(self) if migration else self.seal.quorum_config()) or config
        status = {
            "type": self.seal.type, "initialized": config is not None, "sealed": self.barrier.sealed,
            "t": quorum.secret_threshold if quorum else 0, "n": quorum.secret_shares if quorum else 0,
            "progress": self.seal.progress.progress, "nonce": self.seal.progress.nonce, "version": version,
            "build_date": "2026-11-23T00:00:00Z", "migration": migration,
            "recovery_seal": self.seal.type != "shamir", "storage_type": self.node.storage_type,
        }
        if self.seal.type != "shamir":
            status["recovery_seal_type"] = "shamir"
        if not self.barrier.sealed:
            status["cluster_name"], status["cluster_id"] = self.node.cluster_name, self.cluster_id
        return status

    async def unseal(self, key: bytes, migrate: bool = False) -> dict:
        """sys/unseal: a share of the unseal keys (Shamir), of the recovery keys (an auto seal after sys/seal),
        or, with `migrate`, of the keys the stored seal takes (seal_migration.py)."""
        try:
            if await self.seal.load_config() is None:
                raise errors.NotInitialized()
            if not self.barrier.sealed:
                return await self.seal_status()
            pending = await seal_migration.pending(self)
            if pending is not None and not migrate:
                raise errors.InvalidRequest("migrate option not provided and seal migration is pending")
            # With `migrate` but nothing pending (another node finished the migration meanwhile) the share
            # is one of the new seal's: its unseal shares, or the recovery shares, which the old shares became.
            submit = (lambda share: seal_migration.submit(self, share)) if pending else self.seal.submit
            unsealed = await submit(key)
        except errors.NotInitialized:
            raise errors.InvalidRequest("Vault is not initialized") from None
        if unsealed and self.router is None:
            await self._become_unsealed()
            self.sealed_by_operator = False
        return await self.seal_status()

    async def auto_unseal(self) -> bool:
        """An auto seal unseals by itself, through the HSM: True when this call unsealed the node. Nothing to do
        for a Shamir seal, an uninitialised vault, a pending migration, or a node sealed by sys/seal.
        SealUnavailable when the HSM cannot be used (the caller retries with backoff). Also writes a seal
        migration this node holds once it is the active node."""
        await seal_migration.finish(self)
        if not isinstance(self.seal, seal_module.AutoSeal) or not self.barrier.sealed or self.sealed_by_operator:
            return False
        if await self.seal.load_config() is None or await seal_migration.pending(self) is not None:
            return False
        await self.seal.unseal_with_hsm()
        if self.router is None:
            await self._become_unsealed()
        return True

    async def reset_unseal(self) -> dict:
        if not self.barrier.sealed:
            raise errors.InvalidRequest("vault is unsealed")
        self.seal.progress.reset()
        return await self.seal_status()

    async def seal_vault(self) -> None:
        self.sealed_by_operator = True
        self._become_sealed()

    async def _become_unsealed(self) -> None:
        salt = await self.barrier.get(TOKEN_SALT_PATH)
        if salt is None:  # sys/init writes it, on the active node; an unseal never needs to write
            salt = self.randbytes(32)
            await self.barrier.put(TOKEN_SALT_PATH, salt)
        self.tokens = TokenStore(BarrierView(self.barrier, "sys/token/"), self.clock, salt)
        self.policies = PolicyStore(BarrierView(self.barrier, POLICY_PREFIX))
        self.leases = LeaseStore(BarrierView(self.barrier, "sys/expire/"), self.tokens, self.clock)
        self.wrapping = Wrapping(BarrierView(self.barrier, "sys/wrapped/"), self.tokens, self.clock)
        await self._load_router()
        self.cluster_id = (await self.barrier.get("core/cluster-id") or b"").decode()
        await self.audit.load(self)

    async def _load_router(self) -> None:
        router = Router(self._backend_for)
        for entry in decode_table(await self.barrier.get(MOUNTS_PATH)) + decode_table(
            await self.barrier.get(AUTH_PATH)
        ):
            router.mount(entry)
        self.router = router

    async def invalidate(self, keys: list[str]) -> None:
        """Another node wrote these physical keys and replication applied them here: refresh what is cached.

        Engines keep nothing between requests; the core caches the keyring, the mount tables, the audit
        devices, parsed policies and the seal configuration."""
        if SEAL_CONFIG_PATH in keys or RECOVERY_CONFIG_PATH in keys:
            self.seal.config = None  # reloaded (with the recovery config) on next use
        if self.barrier.sealed or self.router is None:
            return
        if KEYRING_PATH in keys or ROOT_KEY_PATH in keys:
            await self.barrier.reload_keyring()
        if MOUNTS_PATH in keys or AUTH_PATH in keys:
            await self._load_router()
        if AUDIT_PATH in keys:
            await self.audit.load(self)
        for key in keys:
            if key.startswith(POLICY_PREFIX):
                self.policies.invalidate(key[len(POLICY_PREFIX) :])

    async def after_restore(self) -> None:
        """A snapshot replaced the whole store. If this node's root key still opens the keyring, reload
        everything; if not (a snapshot of another cluster, `snapshot-force`), seal: the operator unseals with
        the snapshot's keys."""
        self.seal.config = None
        if self.barrier.sealed:
            return
        try:
            await self.barrier.reload_keyring()
        except Exception:  # noqa: BLE001 - whatever fails to open the restored keyring, this node must seal
            self._become_sealed()
            return
        await self._load_router()
        self.policies = PolicyStore(BarrierView(self.barrier, POLICY_PREFIX))
        self.cluster_id = (await self.barrier.get("core/cluster-id") or b"").decode()
        await self.audit.load(self)

    def _become_sealed(self) -> None:
        self.router = self.tokens = self.policies = self.leases = self.wrapping = None
        self.audit.unload()
        self.barrier.seal()

    async def persist_mounts(self) -> None:
        assert self.router is not None
        await self.barrier.transaction(
            [
                ("put", MOUNTS_PATH, encode_table(self.router.table("mounts"))),
                ("put", AUTH_PATH, encode_table(self.router.table("auth"))),
            ]
        )

    def _backend_for(self, entry: MountEntry) -> Backend:
        if entry.type == "system":
            from .system import system_backend

            return system_backend(self)
        if entry.type == "token":
            from .tokens import token_backend

            return token_backend(self.tokens)
        factory = (self.auth_methods if entry.table == "auth" else self.engines).get(entry.type)
        if factory is None:
            raise errors.InvalidRequest(f"plugin not found in the catalog: {entry.type}")
        return factory(entry.options)

    async def maintenance_pass(self) -> int:
        """One pass of the background work of an unsealed node: revoke expired tokens (bounded per pass)
        and persist the barrier's encryption count. Returns the number of tokens revoked."""
        if self.barrier.sealed or self.tokens is None or not self.ha.is_active():
            return 0  # expiration runs on the active node only; it moves with leadership
        revoked = await self.tokens.revoke_expired()
        await self.leases.tidy()
        await self.barrier.persist_encryptions()
        self.token_count = await self.tokens.count()
        return revoked

    # --- status endpoints --------------------------------------------------------------------------------

    async def health(self) -> dict:
        initialized = await self.is_initialized()
        standby = self.ha.enabled and not self.ha.is_active()
        body = {
            "initialized": initialized, "sealed": self.barrier.sealed, "standby": standby,
            "performance_standby": standby and not self.barrier.sealed and self.ha.is_performance_standby(),
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled", "server_time_utc": int(self.clock.now()), "version": version,
            "enterprise": False, "echo_duration_ms": 0, "clock_skew_ms": 0,
            "replication_primary_canary_age_ms": 0,
        }
        if not self.barrier.sealed:
            body["cluster_name"], body["cluster_id"] = self.node.cluster_name, self.cluster_id
        return body

    async def leader(self) -> dict:
        if not self.ha.enabled:
            return {
                "ha_enabled": False, "is_self": False, "active_time": "0001-01-01T00:00:00Z", "leader_address": "",
                "leader_cluster_address": "", "performance_standby": False,
                "performance_standby_last_remote_wal": 0,
            }
        active = self.ha.is_active()
        status = await self.ha.status()
        return {
            "ha_enabled": True, "is_self": active,
            "active_time": self.ha.active_since() if active else "0001-01-01T00:00:00Z",
            "leader_address": self.ha.leader_api_addr() or "",
            "leader_cluster_address": status.get("leader_cluster_address", ""),
            "performance_standby": not active and not self.barrier.sealed and self.ha.is_performance_standby(),
            "performance_standby_last_remote_wal": 0,
            "raft_committed_index": status.get("raft_committed_index", 0),
            "raft_applied_index": status.get("raft_applied_index", 0),
        }

    # --- logical requests --------------------------------------------------------------------------------

    async def handle(self, request: LogicalRequest) -> LogicalResult:
        """Gate, authenticate, authorise, audit, route, audit. Raises sdk errors for the HTTP table.

        On the active node of a cluster the answer is linearizable: a read barrier starts with the request and
        must complete before any answer (an error is an answer too) leaves; see HighAvailability.begin_read."""
        if self.barrier.sealed or self.router is None:
            raise errors.Sealed()
        linearizable = self.ha.enabled and self.ha.is_active() and request.path != "sys/step-down"  # not a read
        confirm = await self.ha.begin_read() if linearizable else None
        try:
            result = await self._handle(request)
        except errors.VaultError:
            if confirm is not None:
                await confirm()
            raise
        if confirm is not None:
            await confirm()
        return result

    async def _handle(self, request: LogicalRequest) -> LogicalResult:
        request_id = self.new_request_id()
        if self.barrier.sealed or self.router is None:
            raise errors.Sealed()
        wrap_ttl = parse_wrap_ttl(request.headers.get("x-vault-wrap-ttl"))
        mount = self.router.match(request.path)
        backend = self.router.backends.get(mount.path) if mount else None
        unauthenticated = request.path.startswith(unauthenticated_prefixes) or _is_login(mount, request.path)
        entry = await self.tokens.lookup(request.token) if request.token else None
        if entry is None and not unauthenticated:
            raise errors.PermissionDenied()
        engine_request = self._engine_request(request, entry, mount)
        if not unauthenticated:
            operation = await self._operation_for_acl(backend, engine_request)
            acl = await self.policies.acl(entry.policies)
            acl.check(request.path, operation.value, request.data, sudo_required=self._needs_sudo(request.path))
        if mount is None or backend is None:
            raise errors.UnsupportedPath(f'no handler for route "{request.path}". route entry not found.')
        audit_request = self.audit.request_entry(request_id, request, entry, mount)
        await self.audit.log(audit_request)
        # A limited-use token is spent before the request runs (strict under concurrency); an unlimited one has
        # nothing to spend, and its lookup above already checked it, as Vault's UseToken does.
        if entry is not None and entry.num_uses != 0 and await self.tokens.use(request.token) is None:
            raise errors.PermissionDenied()
        response = await backend.handle(engine_request)
        if response is not None and response.auth is not None and _is_login(mount, request.path):
            response = await issue_login_token(self.tokens, self.leases, response, request.path)
        await self.audit.log(self.audit.response_entry(audit_request, response))
        wrap_info = response.wrap_info if response is not None else None
        if wrap_ttl is not None and response is not None and not response.empty:
            wrap_info = await self.wrapping.wrap(response, wrap_ttl, request.path)
        return LogicalResult(request_id, response, mount.type, wrap_info)

    async def authorize(self, request: LogicalRequest) -> None:
        """For the raw routes (raft snapshots): the state gate, the token, the ACL (with sudo where the path
        needs it) and the audit request entry, as `handle` runs them for a logical request."""
        if self.barrier.sealed or self.router is None:
            raise errors.Sealed()
        entry = await self.tokens.lookup(request.token) if request.token else None
        if entry is None:
            raise errors.PermissionDenied()
        acl = await self.policies.acl(entry.policies)
        acl.check(request.path, request.operation.value, {}, sudo_required=self._needs_sudo(request.path))
        await self.audit.log(self.audit.request_entry(self.new_request_id(), request, entry, None))

    def _engine_request(self, request: LogicalRequest, entry, mount: MountEntry | None) -> Request:
        return Request(
            operation=request.operation, path=request.path[len(mount.path) :] if mount else request.path,
            data=dict(request.data), storage=BarrierView(self.barrier, mount.storage_prefix) if mount else None,
            mount_point=mount.path if mount else "", received_at=self.clock.now(),
            token_accessor=entry.accessor if entry else "", display_name=entry.display_name if entry else "",
            policies=list(entry.policies) if entry else [],
            headers=self._engine_headers(request, mount), remote_address=request.remote_address,
        )

    @staticmethod
    def _engine_headers(request: LogicalRequest, mount: MountEntry | None) -> dict[str, str]:
        """Engines never see a token; only the core's own mounts (sys/, auth/token/) get the caller's."""
        headers = {k: v for k, v in request.headers.items() if k not in ("x-vault-token", "authorization")}
        if mount is not None and mount.type in ("system", "token"):
            headers["x-vault-token"] = request.token
        return headers

    async def _operation_for_acl(self, backend, request: Request) -> Operation:
        """A write to a path that has nothing yet needs `create`, else `update` (Vault's existence check)."""
        if request.operation is not Operation.UPDATE or backend is None:
            return request.operation
        try:
            exists = await backend.existence(request)
        except errors.VaultError:
            return request.operation
        return Operation.CREATE if exists is False else Operation.UPDATE

    @staticmethod
    def _needs_sudo(path: str) -> bool:
        exact, prefixes = _sudo_patterns()
        return path in exact or path.startswith(prefixes)
