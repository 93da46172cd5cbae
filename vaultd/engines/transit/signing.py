"""`hmac/<name>[/<algorithm>]`, `sign/<name>[/<algorithm>]` and `verify/<name>[/<algorithm>]`.

Each takes one `input` or a `batch_input` list. Unlike encryption, Vault answers these batches 200 even when
items fail, each failed item carrying its `error`; a single input that fails is a 400. `verify` checks a
`signature` or, for HMACs, an `hmac`, never both kinds in one request.
"""

import base64
import hmac as constant_time

from vaultd.sdk.errors import InvalidRequest
from vaultd.sdk.path import FieldData
from vaultd.sdk.request import Request, Response

from . import signatures
from .inputs import base64_field, batch_items, go_atoi, go_quote, split_versioned, versioned
from .policy import KeyLocks, KeyPolicy, load_policy
from .signatures import HASHES, MARSHALINGS, SigningOptions

salt_length_names = {"auto": signatures.salt_length_auto, "hash": signatures.salt_length_equals_hash}


async def _policy(request: Request, fields: FieldData) -> KeyPolicy:
    policy = await load_policy(request.storage, fields.get("name"))
    if policy is None:
        raise InvalidRequest("encryption key not found")
    return policy


def _items(fields: FieldData, strings: tuple[str, ...], single: dict) -> list[dict]:
    if fields.provided("batch_input"):
        return batch_items(fields.get("batch_input"), (*strings, "reference"))
    return [single]


def _respond(fields: FieldData, items: list[dict], results: list[dict], key: str) -> Response:
    """A batch answers every item, failed or not; a single input answers its result, or fails with 400."""
    if fields.provided("batch_input"):
        for item, result in zip(items, results, strict=True):
            result["reference"] = item.get("reference", "")
        return Response(data={"batch_results": results})
    (result,) = results
    if "error" in result:
        raise InvalidRequest(result["error"])
    if key != "valid":
        result.pop("valid", None)  # HMAC batch results carry Vault's `valid: false`; a single HMAC does not
    return Response(data=result)


def _input(item: dict, missing: str) -> bytes:
    if "input" not in item:
        raise InvalidRequest(missing)
    return base64_field(item["input"], "unable to decode input as base64: {error}")


async def hmac_generate(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    algorithm = fields.get("urlalgorithm") or fields.get("algorithm")
    policy = await _policy(request, fields)
    version, minimum = fields.get("key_version"), policy.min_encryption_version
    if version == 0:
        version = policy.latest_version
    elif version != policy.latest_version and minimum > 0 and version < minimum:
        raise InvalidRequest("cannot generate HMAC: version is too old (disallowed by policy)")
    key = signatures.hmac_key(policy, version)
    if algorithm not in HASHES:
        raise InvalidRequest(f"unsupported algorithm {go_quote(algorithm)}")
    if not fields.provided("batch_input") and not fields.provided("input"):
        raise InvalidRequest("missing input for HMAC")
    items = _items(fields, ("input",), {"input": fields.get("input")})
    results = []
    for item in items:
        try:
            tag = signatures.hmac_sum(algorithm, key, _input(item, "missing input for HMAC"))
            results.append({"hmac": versioned(version, base64.b64encode(tag).decode()), "valid": False})
        except InvalidRequest as error:
            results.append({"valid": False, "error": error.messages[0]})
    return _respond(fields, items, results, "hmac")


def _verify_hmac(policy: KeyPolicy, algorithm: str, item: dict) -> bool:
    data = _input(item, "missing input")
    if "hmac" not in item:
        raise InvalidRequest("missing hmac")
    version, payload = split_versioned(item["hmac"], "HMAC", no_prefix="invalid HMAC to verify: no prefix")
    expected = base64_field(payload, "unable to decode verification HMAC as base64: {error}")
    if version > policy.latest_version:
        raise InvalidRequest("invalid HMAC: version is too new")
    if version < policy.min_decryption_version:
        raise InvalidRequest("cannot verify HMAC: version is too old (disallowed by policy)")
    key = signatures.hmac_key(policy, version)
    return constant_time.compare_digest(signatures.hmac_sum(algorithm, key, data), expected)


def _hash_algorithm(fields: FieldData, default_field: str) -> str:
    """The URL's algorithm, else `hash_algorithm`, else the deprecated `algorithm`, else sha2-256."""
    if fields.get("urlalgorithm"):
        return fields.get("urlalgorithm")
    for name in ("hash_algorithm", "algorithm"):
        if fields.provided(name):
            return fields.get(name)
    return fields.get(default_field)


def _signing_options(fields: FieldData) -> SigningOptions:
    hash_algorithm = _hash_algorithm(fields, "hash_algorithm")
    if hash_algorithm not in HASHES:
        raise InvalidRequest(f"invalid hash algorithm {go_quote(hash_algorithm)}")
    marshaling = fields.get("marshaling_algorithm")
    if marshaling not in MARSHALINGS:
        raise InvalidRequest(f"invalid marshaling type {go_quote(marshaling)}")
    salt_text = fields.get("salt_length")
    salt = salt_length_names.get(salt_text, go_atoi(salt_text))
    if salt is None:
        raise InvalidRequest(f"invalid salt_length: salt length neither 'auto', 'hash', nor an int: {salt_text}")
    return SigningOptions(hash_algorithm=hash_algorithm, prehashed=bool(fields.get("prehashed")),
                          signature_algorithm=fields.get("signature_algorithm") or "pss",
                          marshaling=marshaling, salt_length=salt)


async def sign(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    options = _signing_options(fields)
    policy = await _policy(request, fields)
    if not policy.key_type.supports_signing:
        raise InvalidRequest(f"key type {policy.type} does not support signing")
    single = {"input": fields.get("input") or "", "context": fields.get("context") or ""}
    items = _items(fields, ("input", "context"), single)
    results = []
    for item in items:
        try:
            data = _input(item, "missing input")
            context = base64_field(item.get("context") or "", "failed to base64-decode context")
            signature, version, public = signatures.sign(policy, fields.get("key_version"), data, options, context)
        except InvalidRequest as error:
            results.append({"error": error.messages[0]})
            continue
        result: dict = {"signature": signature, "key_version": version}
        if public:  # Vault names it "publickey" in batch results and "public_key" otherwise
            result["publickey" if fields.provided("batch_input") else "public_key"] = base64.b64encode(public).decode()
        results.append(result)
    return _respond(fields, items, results, "signature")


def _verify_kind(fields: FieldData) -> tuple[list[dict], str]:
    """The items and which of "signature" or "hmac" they all carry, refused as Vault refuses mixtures."""
    batch = fields.provided("batch_input")
    if batch:
        items = batch_items(fields.get("batch_input"), ("input", "signature", "hmac", "context", "reference"))
    else:
        items = [{"input": fields.get("input") or "", "context": fields.get("context") or "",
                  **{name: fields.get(name) for name in ("signature", "hmac") if fields.provided(name)}}]
    kinds = ["signature" if "signature" in item else "hmac" if "hmac" in item else "" for item in items]
    has_signature, has_hmac, missing = "signature" in kinds, "hmac" in kinds, "" in kinds
    if not batch and "signature" in items[0] and "hmac" in items[0]:
        raise InvalidRequest("provide one of 'signature' or 'hmac'")
    if not batch and missing:
        raise InvalidRequest("neither a 'signature' nor an 'hmac' were given to verify")
    if has_signature and has_hmac:
        raise InvalidRequest("elements of batch_input must all provide 'signature' or all provide 'hmac'")
    if missing:
        if has_signature or has_hmac:
            wanted = "signature" if has_signature else "hmac"
            raise InvalidRequest(f"some elements of batch_input are missing '{wanted}'")
        raise InvalidRequest("no batch_input elements have 'signature' or 'hmac'")
    return items, "signature" if has_signature else "hmac"


async def verify(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    items, kind = _verify_kind(fields)
    if kind == "hmac":
        algorithm = _hash_algorithm(fields, "hash_algorithm")
        policy = await _policy(request, fields)
        if algorithm not in HASHES:
            raise InvalidRequest(f"unsupported algorithm {go_quote(algorithm)}")
        return _respond(fields, items, [_verified(lambda item: _verify_hmac(policy, algorithm, item), item)
                                        for item in items], "valid")
    options = _signing_options(fields)
    policy = await _policy(request, fields)
    if not policy.key_type.supports_signing:
        raise InvalidRequest(f"key type {policy.type} does not support verification")

    def check(item: dict) -> bool:
        data = _input(item, "missing input")
        context = base64_field(item.get("context") or "", "failed to base64-decode context")
        return signatures.verify(policy, data, item["signature"], options, context)

    return _respond(fields, items, [_verified(check, item) for item in items], "valid")


def _verified(check, item: dict) -> dict:
    try:
        return {"valid": check(item)}
    except InvalidRequest as error:
        return {"valid": False, "error": error.messages[0]}
