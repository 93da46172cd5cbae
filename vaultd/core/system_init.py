"""sys/init: validate the request as Vault does, make the keys, set the vault up once, leave it sealed.

Set-up, done unsealed with the fresh root key before sealing again (as Vault's Initialize does): the default
mounts (sys/, auth/token/), a cluster id, and the root token, which is returned once and never stored in
plaintext.
"""

import base64

from ..sdk import errors
from . import seal as seal_module
from .mounts import MountEntry

default_recovery_shares, default_recovery_threshold = 5, 3  # the Vault CLI's defaults
default_mounts = (
    ("sys/", "system", "system endpoints used for control, policy and debugging", "mounts"),
    ("auth/token/", "token", "token based credentials", "auth"),
)


def _validate(body: dict) -> tuple[int, int]:
    for unsupported in ("pgp_keys", "root_token_pgp_key", "recovery_pgp_keys"):
        if body.get(unsupported):
            raise errors.InvalidRequest(f"{unsupported} is not supported by this server")
    if body.get("recovery_shares") or body.get("recovery_threshold"):
        raise errors.InvalidRequest("parameters recovery_shares,recovery_threshold not applicable to seal type shamir")
    if body.get("stored_shares"):
        raise errors.InvalidRequest("stored keys are not supported")
    try:
        shares, threshold = int(body.get("secret_shares") or 0), int(body.get("secret_threshold") or 0)
    except (TypeError, ValueError):
        raise errors.InvalidRequest("secret_shares and secret_threshold must be integers") from None
    seal_module.validate_shares(shares, threshold)
    return shares, threshold


async def initialize(core, body: dict) -> dict:
    if isinstance(core.seal, seal_module.AutoSeal):
        return await _initialize_auto(core, body)
    shares, threshold = _validate(body)
    if await core.is_initialized():
        raise errors.InvalidRequest("Vault is already initialized")
    key_shares = await core.seal.initialize(shares, threshold)
    for share in key_shares[:threshold]:
        await core.seal.submit(share)
    try:
        root_token = await _set_up(core)
    finally:
        core._become_sealed()
    return {
        "keys": [share.hex() for share in key_shares],
        "keys_base64": [base64.b64encode(share).decode() for share in key_shares],
        "root_token": root_token,
    }


def _validate_auto(body: dict, seal_type: str) -> tuple[int, int]:
    """An auto seal takes recovery shares; the unseal keys live in the HSM (vault_api.md §2.1)."""
    for unsupported in ("pgp_keys", "root_token_pgp_key", "recovery_pgp_keys"):
        if body.get(unsupported):
            raise errors.InvalidRequest(f"{unsupported} is not supported by this server")
    if body.get("secret_shares") or body.get("secret_threshold"):
        raise errors.InvalidRequest(
            f"parameters secret_shares,secret_threshold not applicable to seal type {seal_type}")
    if body.get("stored_shares") not in (None, 0, 1):
        raise errors.InvalidRequest("stored_shares must be 1 with an auto seal")
    try:
        shares = int(body.get("recovery_shares") or default_recovery_shares)
        threshold = int(body.get("recovery_threshold") or default_recovery_threshold)
    except (TypeError, ValueError):
        raise errors.InvalidRequest("recovery_shares and recovery_threshold must be integers") from None
    seal_module.validate_shares(shares, threshold)
    return shares, threshold


async def _initialize_auto(core, body: dict) -> dict:
    """Make the root key (HSM-encrypted) and the recovery keys, set up, and stay unsealed, as Vault does."""
    shares, threshold = _validate_auto(body, core.seal.type)
    if await core.is_initialized():
        raise errors.InvalidRequest("Vault is already initialized")
    recovery_shares = await core.seal.initialize(shares, threshold)
    await core.seal.unseal_with_hsm()
    try:
        root_token = await _set_up(core)
    except BaseException:
        core._become_sealed()
        raise
    return {
        "keys": [], "keys_base64": [], "root_token": root_token,
        "recovery_keys": [share.hex() for share in recovery_shares],
        "recovery_keys_base64": [base64.b64encode(share).decode() for share in recovery_shares],
    }


async def _set_up(core) -> str:
    await core.barrier.put("core/cluster-id", seal_module.format_uuid(core.randbytes(16)).encode())
    await core._become_unsealed()
    for path, mount_type, description, table in default_mounts:
        core.router.mount(new_mount_entry(core, path, mount_type, description, table=table))
    await core.persist_mounts()
    token, _ = await core.tokens.create_root_token()
    return token


def new_mount_entry(core, path: str, mount_type: str, description: str = "", table: str = "mounts", **kwargs):
    uuid = seal_module.format_uuid(core.randbytes(16))
    prefix = {"kv": "kv", "system": "system", "token": "auth_token"}.get(mount_type, mount_type)
    accessor = f"{prefix}_{core.randbytes(4).hex()}"
    return MountEntry(path, mount_type, uuid, accessor, description, table=table, **kwargs)
