"""Transit's keyless tools: `hash[/<algorithm>]` and `random[/<source>][/<bytes>]`, as Vault's path_hash.go
and helper/random's HandleRandomAPI answer them. Neither touches storage."""

import base64
import os

from vaultd.sdk.errors import InvalidRequest
from vaultd.sdk.path import FieldData
from vaultd.sdk.request import Request, Response

from .inputs import base64_field, go_atoi, go_quote
from .policy import KeyLocks
from .signatures import digest

hash_algorithms = ("sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha3-224", "sha3-256", "sha3-384", "sha3-512")
random_bytes_max = 128 * 1024  # Vault's maxBytes
random_bytes_default = 32
# Without an entropy-augmenting seal, Vault's "seal" and "all" sources read the platform's generator too.
random_sources = ("", "platform", "seal", "all")

assert 0 < random_bytes_default <= random_bytes_max


def _encoded(raw: bytes, encoding: str) -> str:
    return raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()


async def hash_input(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    if not fields.provided("input"):
        raise InvalidRequest("input missing")
    encoding = fields.get("format")
    algorithm = fields.get("urlalgorithm") or fields.get("algorithm")
    data = base64_field(fields.get("input"), "unable to decode input as base64: {error}")
    if encoding not in ("hex", "base64"):
        raise InvalidRequest(f'unsupported encoding format {encoding}; must be "hex" or "base64"')
    if algorithm not in hash_algorithms:
        raise InvalidRequest(f"unsupported algorithm {algorithm}")
    return Response(data={"sum": _encoded(digest(algorithm, data), encoding)})


def _byte_count(fields: FieldData) -> int:
    """HandleRandomAPI's reading of the URL: `random/<bytes>`, `random/<source>` or `random/<source>/<bytes>`,
    the count otherwise from the `bytes` field."""
    source, url_bytes = fields.get("source") or "", fields.get("urlbytes") or ""
    if not url_bytes and source in random_sources:
        return fields.get("bytes")
    if url_bytes and source not in random_sources:
        raise InvalidRequest(f"unsupported entropy source {go_quote(source)}; must be \"platform\" or \"seal\", "
                             "or \"all\"")
    text = url_bytes or source  # `random/<bytes>`: the one segment is the count
    count = go_atoi(text)
    if count is None:
        raise InvalidRequest(f"error parsing url-set byte count: strconv.Atoi: parsing {go_quote(text)}: "
                             "invalid syntax")
    return count


async def random_bytes(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    count = _byte_count(fields)
    encoding = fields.get("format")
    if count < 1:
        raise InvalidRequest('"bytes" cannot be less than 1')
    if count > random_bytes_max:
        raise InvalidRequest(f'"bytes" should be less than {random_bytes_max}')
    if encoding not in ("hex", "base64"):
        raise InvalidRequest(f'unsupported encoding format {go_quote(encoding)}; must be "hex" or "base64"')
    return Response(data={"random_bytes": _encoded(os.urandom(count), encoding)})
