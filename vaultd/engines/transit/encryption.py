"""`encrypt/<name>`, `decrypt/<name>`, `rewrap/<name>` and `datakey/<plaintext|wrapped>/<name>`.

Each takes one item (`plaintext` or `ciphertext` with `context`, ...) or a `batch_input` list of them. An
item that fails carries its `error`; as in Vault's batchRequestResponse, a batch with any failed item is
answered 400 with the whole body (`data.batch_results`), unless some item succeeded and the request set
`partial_failure_response_code` to 200. Encrypting to a missing key creates it (an UPDATE the dispatcher
turned into CREATE), but only once some item has encrypted: a request that fails leaves storage as it was.
"""

import base64
import os

from vaultd.sdk.errors import InvalidRequest
from vaultd.sdk.path import FieldData
from vaultd.sdk.request import Operation, Request, Response

from . import ciphers, material
from .inputs import base64_field, batch_items
from .keys import KeySettings, check_new_key, new_policy
from .policy import KEY_TYPES, KeyLocks, KeyPolicy, load_policy, nanoseconds, policy_exists, save_policy

nonce_not_allowed = "provided nonce not allowed for this key"  # Vault's ErrNonceNotAllowed
datakey_bits = (128, 256, 512)
datakey_bits_default = 256
upsert_types = ("aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "rsa-2048", "rsa-3072", "rsa-4096")

assert datakey_bits_default in datakey_bits
assert all(KEY_TYPES[name].supports_encryption for name in upsert_types)


async def key_exists(request: Request, fields: FieldData) -> bool:
    return await policy_exists(request.storage, fields.get("name"))


def _inputs(fields: FieldData, payload: str, strings: tuple[str, ...], missing: str,
            required: bool = True) -> list[dict]:
    """The request's items, and Vault's check that `context` is in all of them or in none. A batch item
    without its `payload` fails the whole request when `required` (encrypt, decrypt), else only itself."""
    if fields.provided("batch_input"):
        items = batch_items(fields.get("batch_input"), (payload, *strings, "reference"), ("key_version",),
                            {payload: missing} if required else None)
    elif not fields.provided(payload) or (payload == "ciphertext" and not fields.get(payload)):
        raise InvalidRequest(missing)
    else:
        items = [{name: fields.get(name) for name in (payload, *strings, "key_version") if fields.provided(name)}]
    with_context = [bool(item.get("context")) for item in items]
    if any(with_context) and not all(with_context):
        raise InvalidRequest("context should be set either in all the request blocks or in none")
    return items


def _item_bytes(policy: KeyPolicy, index: int, item: dict) -> tuple[bytes, bytes | None]:
    """An item's decoded context and associated data. A nonce is refused: only Vault's long-gone
    convergent version 1 took one from the caller."""
    context = base64_field(item.get("context") or "")
    if item.get("nonce"):
        base64_field(item["nonce"])
        raise InvalidRequest(nonce_not_allowed)
    associated = item.get("associated_data")
    if not associated:
        return context, None
    if policy.key_type.family != "aead":
        raise InvalidRequest(f"'[{index}].associated_data' provided for non-AEAD cipher suite {policy.type}")
    return context, base64_field(associated, "unable to get associated_data/additional_data from factory[0]: "
                                             "{error}")


def _encrypt_item(policy: KeyPolicy, index: int, item: dict) -> dict:
    try:
        plaintext = base64_field(item.get("plaintext", ""))
        context, associated = _item_bytes(policy, index, item)
        ciphertext, version = ciphers.encrypt(policy, item.get("key_version", 0), plaintext, context, associated)
    except InvalidRequest as error:
        return {"error": error.messages[0]}
    return {"ciphertext": ciphertext, "key_version": version}


def _decrypt_item(policy: KeyPolicy, index: int, item: dict) -> dict:
    try:
        if not item.get("ciphertext"):
            raise InvalidRequest("missing ciphertext to decrypt")
        context, associated = _item_bytes(policy, index, item)
        plaintext = ciphers.decrypt(policy, item["ciphertext"], context, associated)
    except InvalidRequest as error:
        return {"plaintext": "", "error": error.messages[0]}
    return {"plaintext": base64.b64encode(plaintext).decode()}


def _rewrap_item(policy: KeyPolicy, index: int, item: dict) -> dict:
    try:
        if not item.get("ciphertext"):
            raise InvalidRequest("missing ciphertext to decrypt")
        context, _ = _item_bytes(policy, index, {**item, "associated_data": None})
        plaintext = ciphers.decrypt(policy, item["ciphertext"], context)
        ciphertext, version = ciphers.encrypt(policy, item.get("key_version", 0), plaintext, context)
    except InvalidRequest as error:
        return {"error": error.messages[0]}
    return {"ciphertext": ciphertext, "key_version": version}


def _respond(fields: FieldData, items: list[dict], results: list[dict], warnings: list[str]) -> Response:
    """One item answers alone (its error as a 400); a batch as Vault's batchRequestResponse does."""
    if not fields.provided("batch_input"):
        (result,) = results
        if "error" in result:
            raise InvalidRequest(result["error"])
        return Response(data=dict(result), warnings=warnings)
    for item, result in zip(items, results, strict=True):
        result["reference"] = item.get("reference", "")
    data = {"batch_results": results}
    failures = [result["error"] for result in results if "error" in result]
    partial = len(failures) < len(results) and fields.get("partial_failure_response_code") == 200
    if failures and not partial:
        raise InvalidRequest(*dict.fromkeys(failures), data=data)
    return Response(data=data, warnings=warnings)


async def encrypt(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    name = fields.get("name")
    items = _inputs(fields, "plaintext", ("context", "nonce", "associated_data"), "missing plaintext to encrypt")
    if request.operation is not Operation.CREATE:
        policy = await _existing(request, name)
        if rotation_due(policy, request.received_at):
            policy = await rotate_if_due(locks, request, name)
        results = [_encrypt_item(policy, index, item) for index, item in enumerate(items)]
        return _respond(fields, items, results, [])
    settings = _upsert_settings(fields, items)
    warnings = []
    async with locks.hold(name):
        policy = await load_policy(request.storage, name)
        created = policy is None
        if created:
            policy = new_policy(name, settings, nanoseconds(request.received_at))
        else:
            warnings.append("Attempted creation of the key during the encrypt operation, but it was created "
                            "beforehand")
        results = [_encrypt_item(policy, index, item) for index, item in enumerate(items)]
        if created and any("error" not in result for result in results):
            await save_policy(request.storage, policy)
    return _respond(fields, items, results, warnings)


def _upsert_settings(fields: FieldData, items: list[dict]) -> KeySettings:
    """The key an encrypt creates: `type`, derived when the items carry a context, convergent if asked."""
    derived = bool(items[0].get("context"))
    convergent = bool(fields.get("convergent_encryption"))
    if convergent and not derived:
        raise InvalidRequest("convergent encryption requires derivation to be enabled, so context is required")
    key_type = fields.get("type")
    if key_type in KEY_TYPES and key_type not in upsert_types:
        raise InvalidRequest(f"key type {key_type} not supported for this operation")
    if key_type not in upsert_types:
        raise InvalidRequest(f"unknown key type {key_type}")
    settings = KeySettings(type=key_type, derived=derived, convergent_encryption=convergent)
    check_new_key(settings)
    return settings


def rotation_due(policy: KeyPolicy, now: float) -> bool:
    """Vault rotates a key whose latest version is older than its auto_rotate_period. With no clock of its
    own, this engine does so lazily: at the first encryption after the period has passed."""
    if not policy.auto_rotate_period:
        return False
    latest = policy.versions[policy.latest_version].created_at
    return nanoseconds(now) - latest >= policy.auto_rotate_period * 1_000_000_000


async def rotate_if_due(locks: KeyLocks, request: Request, name: str) -> KeyPolicy:
    """Rotate under the key's lock, checking again there: two requests never both add a version."""
    async with locks.hold(name):
        policy = await _existing(request, name)
        if rotation_due(policy, request.received_at):
            policy.add_version(material.new_version(policy.key_type, policy.key_size,
                                                    nanoseconds(request.received_at), policy.convergent_encryption))
            await save_policy(request.storage, policy)
        return policy


async def _existing(request: Request, name: str) -> KeyPolicy:
    policy = await load_policy(request.storage, name)
    if policy is None:
        raise InvalidRequest("encryption key not found")
    return policy


async def decrypt(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    items = _inputs(fields, "ciphertext", ("context", "nonce", "associated_data"), "missing ciphertext to decrypt")
    policy = await _existing(request, fields.get("name"))
    results = [_decrypt_item(policy, index, item) for index, item in enumerate(items)]
    return _respond(fields, items, results, [])


async def rewrap(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    """Decrypt with whichever version a ciphertext names, encrypt with `key_version` (0: the latest)."""
    items = _inputs(fields, "ciphertext", ("context", "nonce"), "missing ciphertext to decrypt", required=False)
    policy = await _existing(request, fields.get("name"))
    results = [_rewrap_item(policy, index, item) for index, item in enumerate(items)]
    return _respond(fields, items, results, [])


async def datakey(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    """A fresh random key of `bits`, encrypted with the named key; its plaintext too for `plaintext/`."""
    kind = fields.get("plaintext")
    if kind not in ("plaintext", "wrapped"):
        raise InvalidRequest("Invalid path, must be 'plaintext' or 'wrapped'")
    context = base64_field(fields.get("context") or "", "failed to base64-decode context")
    nonce = base64_field(fields.get("nonce") or "", "failed to base64-decode nonce")
    policy = await _existing(request, fields.get("name"))
    bits = fields.get("bits") or datakey_bits_default
    if bits not in datakey_bits:
        raise InvalidRequest("invalid bits length")
    if nonce:
        raise InvalidRequest(nonce_not_allowed)
    associated = _item_bytes(policy, 0, {"associated_data": fields.get("associated_data")})[1]
    key = os.urandom(bits // 8)
    ciphertext, version = ciphers.encrypt(policy, fields.get("key_version") or 0, key, context, associated)
    data = {"ciphertext": ciphertext, "key_version": version}
    if kind == "plaintext":
        data["plaintext"] = base64.b64encode(key).decode()
    return Response(data=data)
