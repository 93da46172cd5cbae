"""sys/generate-root: a new root token from a threshold of unseal shares, handed out under a one-time pad.

Vault's protocol (vault_api.md §3.5–3.6; Vault's vault/generate_root.go, sdk/helper/roottoken). `start` takes the
operator's OTP, or draws one and returns it in that response only; it must be as long as a token (`hvs.` + 24
characters = 28). Each `update` brings one unseal share with the attempt's nonce. At the threshold the shares must
open the stored root key, or the attempt keeps going with its progress started over. Then the token store makes
a new root token, and the answer carries `base64.RawStdEncoding(token XOR otp)`: only the holder of the OTP can
read it (`decode_root_token`).

The OTP and the shares live only in this module's state, which is forgotten when the attempt ends, is cancelled,
or the vault seals; none of them is logged. PGP-encrypted tokens are not supported (400).
"""

import asyncio
import base64
import binascii
import dataclasses
import logging
import string
from typing import TYPE_CHECKING

from ..sdk.errors import InvalidRequest
from . import tokens
from .rekey import (
    KeyShares,
    check_key_length,
    new_nonce,
    random_below,
    require_unsealed,
    seal_config,
    verify_quorum,
)

if TYPE_CHECKING:
    from .core import Core

logger = logging.getLogger(__name__)

otp_length = len(tokens.token_prefix) + tokens.token_random_chars  # an OTP pads exactly one token
base62_alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase  # Vault's base62.Random

assert otp_length == 28


def encode_root_token(token: str, otp: str) -> str:
    """Vault's roottoken.EncodeToken: base64 without padding of the token XOR the OTP."""
    return base64.b64encode(_xor(token.encode(), otp.encode())).decode().rstrip("=")


def decode_root_token(encoded: str, otp: str) -> str:
    """Vault's roottoken.DecodeToken for an OTP (what `vault operator generate-root -decode` does)."""
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"error decoding base64'd token: {error}") from None
    return _xor(raw, otp.encode()).decode()


def _xor(left: bytes, right: bytes) -> bytes:
    if len(left) != len(right):
        raise ValueError(f"length of byte slices is not equivalent: {len(left)} != {len(right)}")
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


@dataclasses.dataclass
class _AttemptState:
    unseal: object = dataclasses.field(repr=False)  # core.router when it began: the core makes one per unseal
    nonce: str
    otp: str = dataclasses.field(repr=False)
    shares: KeyShares = dataclasses.field(default_factory=KeyShares)


class GenerateRoot:
    """Root-token generation on one core: sys/generate-root/attempt and update. Raises sdk errors."""

    def __init__(self, core: "Core"):
        self._core = core
        self._lock = asyncio.Lock()  # one update at a time: the last share awaits storage and the token store
        self._state: _AttemptState | None = None

    def _current(self) -> _AttemptState | None:
        if self._state is not None and self._state.unseal is not self._core.router:
            self._state = None  # the vault sealed since it began
        return self._state

    async def status(self, otp: str = "") -> dict:
        """GET sys/generate-root/attempt. `otp` is shown only by the `start` that drew it."""
        config = await seal_config(self._core, "server is not yet initialized")
        require_unsealed(self._core)
        state = self._current()
        return {
            "nonce": state.nonce if state else "", "started": state is not None,
            "progress": state.shares.count if state else 0, "required": config.secret_threshold,
            "complete": False, "encoded_token": "", "encoded_root_token": "", "pgp_fingerprint": "",
            "otp": otp, "otp_length": otp_length,
        }

    async def start(self, body: dict) -> dict:
        """PUT sys/generate-root/attempt with lower-case `body` keys: `otp`, or nothing to have one drawn."""
        if body.get("pgp_key"):
            raise InvalidRequest("pgp_key is not supported by this server")
        otp = body.get("otp") or ""
        if not isinstance(otp, str):
            raise InvalidRequest("otp must be a string")
        drawn = not otp
        if drawn:
            otp = "".join(base62_alphabet[random_below(self._core.randbytes, 62)] for _ in range(otp_length))
        if len(otp) != otp_length:
            raise InvalidRequest("OTP string has incorrect length")
        async with self._lock:
            require_unsealed(self._core)
            if self._current() is not None:
                raise InvalidRequest("root generation already in progress")
            nonce = new_nonce(self._core)
            self._state = _AttemptState(self._core.router, nonce, otp)
        logger.info("root generation initialized: nonce=%s", nonce)
        return await self.status(otp if drawn else "")

    async def cancel(self) -> None:
        """DELETE sys/generate-root/attempt (204)."""
        async with self._lock:
            require_unsealed(self._core)
            self._state = None

    async def update(self, key: bytes, nonce: str) -> dict:
        """PUT sys/generate-root/update: one unseal share; at the threshold, the encoded new root token."""
        check_key_length(key)
        config = await seal_config(self._core, "Vault is not initialized")
        async with self._lock:
            require_unsealed(self._core)
            token_store = self._core.tokens  # a seal meanwhile makes its writes fail Sealed, not vanish
            state = self._current()
            if state is None:
                raise InvalidRequest("no root generation in progress")
            if nonce != state.nonce:
                raise InvalidRequest(
                    f'incorrect nonce supplied; nonce for this root generation operation is "{state.nonce}"'
                )
            progress = state.shares.add(key, "given key has already been provided during this generation operation")
            response = {
                "nonce": nonce, "started": True, "progress": progress, "required": config.secret_threshold,
                "complete": False, "encoded_token": "", "encoded_root_token": "", "pgp_fingerprint": "",
                "otp": "", "otp_length": 0,
            }
            if progress < config.secret_threshold:
                return response
            try:
                await verify_quorum(self._core, state.shares.take())
            except InvalidRequest as error:
                raise InvalidRequest(f"root generation aborted: {error.messages[0]}") from None
            token, _ = await token_store.create_root_token()
            encoded = encode_root_token(token, state.otp)
            self._state = None
        logger.info("root generation finished: nonce=%s", nonce)
        response.update(complete=True, encoded_token=encoded, encoded_root_token=encoded)
        return response
