"""Seal migration (vault_api.md §11.3): the stored seal differs from the configured one, and `sys/unseal` with
`migrate=true` moves the cluster over. Three ways, each one atomic transaction on the active node:

- Shamir → PKCS#11 (cluster.toml says pkcs11, storage says shamir): a threshold of the UNSEAL shares opens the
  root key; it is stored HSM-encrypted, and the KEK those shares make becomes the recovery key, so the old
  unseal shares are the recovery shares from then on.
- PKCS#11 → Shamir (cluster.toml keeps the pkcs11 table with `disabled = true`): a threshold of the RECOVERY
  shares, checked with the HSM; the recovery key becomes the KEK that wraps the root key, so the recovery shares
  are the unseal shares from then on; the recovery records are deleted.
- PKCS#11 key A → key B (cluster.toml names a new `key_label`; the old key still in the token): a threshold of
  recovery shares; the root key and the recovery key are re-encrypted under the new key.

The transaction is the commit point: before it, nothing changed (start again); after it, the cluster runs on
the new seal. A node that gets the shares unseals itself with them and keeps the migration's writes in memory;
whichever such node is (or becomes) the active node writes them (`finish`, also run by the auto-unseal loop),
and the others drop theirs once the stored seal has changed. While a migration is pending, a plain unseal is
refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sdk.errors import InvalidRequest
from . import seal as seal_module
from .seal import (
    RECOVERY_CONFIG_PATH,
    RECOVERY_KEY_PATH,
    SEAL_CONFIG_PATH,
    STORED_KEYS_PATH,
    AutoSeal,
    SealConfig,
    ShamirSeal,
)

if TYPE_CHECKING:
    from .core import Core


async def pending(core: Core) -> str | None:
    """The migration the stored seal calls for ("shamir-to-pkcs11", ...), or None."""
    stored = await core.seal.load_config()
    if stored is None:
        return None
    if stored.type != core.seal.type:
        return f"{stored.type}-to-{core.seal.type}"
    if isinstance(core.seal, AutoSeal):
        blob = await core.barrier.raw_get(STORED_KEYS_PATH)
        if blob is not None and core.seal.wrapper.blob_key_label(blob) != core.seal.wrapper.key_label:
            return "pkcs11-key"
    return None


def old_seal(core: Core, kind: str):
    """The seal that guards the stored keys until the migration: the one to take the shares with."""
    if kind == "shamir-to-pkcs11":
        return ShamirSeal(core.barrier, core.randbytes)
    if kind == "pkcs11-to-shamir" and core.migrate_from is not None:
        return core.migrate_from  # the disabled pkcs11 seal of a migration to Shamir
    if kind == "pkcs11-key":
        return core.seal  # the same seal decrypts with the key each blob names
    raise InvalidRequest(f"the stored seal is {core.seal.config.type}: to migrate away from it, keep its [seal] "
                         "table in cluster.toml with disabled = true")


async def old_seal_config(core: Core) -> SealConfig | None:
    """The shares a pending migration takes: the stored Shamir config, or the stored recovery config."""
    stored = core.seal.config
    if stored is not None and stored.type == "shamir":
        return stored
    source = core.migrate_from or core.seal
    await source.load_config()
    return getattr(source, "recovery_config", None)


async def submit(core: Core, share: bytes) -> bool:
    """One share towards the migration; at the old seal's threshold, migrate (or, on a standby, unseal)."""
    kind = await pending(core)
    if kind is None:
        raise InvalidRequest("no seal migration is pending")
    source = old_seal(core, kind)
    await source.load_config()
    threshold = source.quorum_config().secret_threshold
    core.seal.progress.add(share)
    if core.seal.progress.progress < threshold:
        return False
    shares = core.seal.progress.shares
    core.seal.progress.reset()
    quorum = await source.verify_quorum(shares)
    root_key = quorum.root_key or await source.root_key()
    core.pending_migration = await _ops(core, kind, source, quorum.key, root_key)
    await core.barrier.unseal(root_key)
    await finish(core)
    return True


async def finish(core: Core) -> bool:
    """Write the migration this node took the shares for, once it is the active node (it may have got them as a
    standby, and leadership moves to unsealed nodes); forget it when another node has migrated already."""
    ops = core.pending_migration
    if ops is None:
        return False
    if await pending(core) is None:
        core.pending_migration = None
        return False
    if not core.ha.is_active():
        return False
    await core.barrier.raw_transaction(ops)
    core.pending_migration = None
    await core.seal.load_config()
    return True


async def _ops(core: Core, kind: str, source, quorum_key: bytes, root_key: bytes) -> list:
    if kind == "shamir-to-pkcs11":
        seal: AutoSeal = core.seal
        return [
            ("put", STORED_KEYS_PATH, await seal.encrypt_at(root_key, STORED_KEYS_PATH)),
            ("put", RECOVERY_KEY_PATH, await seal.encrypt_at(quorum_key, RECOVERY_KEY_PATH)),
            ("put", RECOVERY_CONFIG_PATH, source.config.encode()),
            ("put", SEAL_CONFIG_PATH, SealConfig("pkcs11", 1, 1).encode()),
        ]
    if kind == "pkcs11-to-shamir":
        recovery: SealConfig = source.recovery_config
        return [
            ("put", STORED_KEYS_PATH, seal_module.wrap_with_kek(quorum_key, root_key, core.randbytes)),
            ("put", SEAL_CONFIG_PATH, SealConfig("shamir", recovery.secret_shares, recovery.secret_threshold).encode()),
            ("delete", RECOVERY_KEY_PATH, None),
            ("delete", RECOVERY_CONFIG_PATH, None),
        ]
    if kind == "pkcs11-key":
        seal = core.seal
        return [
            ("put", STORED_KEYS_PATH, await seal.encrypt_at(root_key, STORED_KEYS_PATH)),
            ("put", RECOVERY_KEY_PATH, await seal.encrypt_at(quorum_key, RECOVERY_KEY_PATH)),
        ]
    raise InvalidRequest(f"cannot migrate {kind}")
