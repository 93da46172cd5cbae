"""`backup/<name>` and `restore[/<name>]`: a whole key, every version's material included, as one base64
string. Only a key that is both exportable and allows plaintext backup can be backed up, as in Vault; the
blob is this engine's own record (`{"policy": <KeyPolicy JSON>}`), not Vault's, so backups do not cross
between the two. A restore checks the record and every version's material before it writes anything."""

import base64
import binascii
import json
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vaultd.sdk.errors import InvalidRequest
from vaultd.sdk.path import FieldData
from vaultd.sdk.request import Request, Response

from . import material
from .policy import (
    KeyLocks,
    KeyPolicy,
    hmac_key_bytes,
    hmac_type_key_bytes_max,
    hmac_type_key_bytes_min,
    load_policy,
    nanoseconds,
    save_policy,
)

# Vault's framework.GenericNameRegex, with Go's ASCII-only \w.
name_pattern = r"[A-Za-z0-9_](?:[A-Za-z0-9_.@-]*[A-Za-z0-9_])?"
_name = re.compile(name_pattern + r"\Z")


async def backup_key(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    """The key's blob; the key records when it was taken (its `backup_info`)."""
    name = fields.get("name")
    async with locks.hold(name):
        policy = await load_policy(request.storage, name)
        if policy is None:
            raise InvalidRequest(f'key "{name}" not found')
        if not policy.exportable:
            raise InvalidRequest("exporting is disallowed on the policy")
        if not policy.allow_plaintext_backup:
            raise InvalidRequest("plaintext backup is disallowed on the policy")
        policy.backup_info = {"time": nanoseconds(request.received_at), "version": policy.latest_version}
        await save_policy(request.storage, policy)
    record = {"policy": json.loads(policy.encode())}
    return Response(data={"backup": base64.b64encode(json.dumps(record).encode()).decode()})


def _restored(blob: str) -> KeyPolicy:
    try:
        record = json.loads(base64.b64decode(blob, validate=True))
        policy = KeyPolicy.decode(json.dumps(record["policy"]).encode())
        _check_material(policy)
    except (binascii.Error, ValueError, KeyError, TypeError, UnsupportedAlgorithm):
        raise InvalidRequest("backup data does not contain a valid policy") from None
    return policy


def _check_material(policy: KeyPolicy) -> None:
    """Every version's key has the right shape for its type; asymmetric keys load and are consistent."""
    kind = policy.key_type
    for entry in policy.versions.values():
        if len(entry.hmac_key) != hmac_key_bytes:
            raise ValueError("bad hmac key")
        if kind.family == "aead" and len(entry.key) != kind.size:
            raise ValueError("bad key size")
        if kind.family == "hmac" and not hmac_type_key_bytes_min <= len(entry.key) <= hmac_type_key_bytes_max:
            raise ValueError("bad key size")
        if kind.family == "ed25519":
            public = material.private_key(kind, entry).public_key().public_bytes_raw()
            if len(entry.key) != 2 * material.ed25519_seed_bytes or entry.key[material.ed25519_seed_bytes:] != public:
                raise ValueError("bad ed25519 key")
        elif kind.asymmetric:
            key = material.private_key(kind, entry, validate=True)
            expected = ec.EllipticCurvePrivateKey if kind.family == "ecdsa" else rsa.RSAPrivateKey
            if not isinstance(key, expected) or key.key_size != kind.size:
                raise ValueError("wrong key type")


async def restore_key(locks: KeyLocks, request: Request, fields: FieldData) -> None:
    """Write a backed-up key under its own name or the one in the path; an existing key only with `force`."""
    if not fields.get("backup"):
        raise InvalidRequest("'backup' must be supplied")
    policy = _restored(fields.get("backup"))
    name = fields.get("name") or policy.name
    if not _name.match(name):
        raise InvalidRequest(f"invalid key name {name!r}")
    policy.name = name
    async with locks.hold(name):
        if await load_policy(request.storage, name) is not None and not fields.get("force"):
            raise InvalidRequest(f'key "{name}" already exists')
        policy.restore_info = {"time": nanoseconds(request.received_at), "version": policy.latest_version}
        await save_policy(request.storage, policy)
    return None
