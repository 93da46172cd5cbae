"""sys/rekey: new unseal keys (new shares of a new KEK) from a threshold of the current ones.

Vault's protocol (vault_api.md §3.1–3.3; Vault's vault/rekey.go). `start` fixes the new shares and threshold and
draws a nonce. Each `update` brings one CURRENT unseal share with that nonce; at the current threshold they are
combined into the KEK, which must unwrap the stored root key (`core/hsm/barrier-unseal-keys`), or nothing changes
and the progress starts over. Then a new KEK is drawn and split into the new shares, the root key is wrapped under
it, and the wrapping and the new seal config are written in one transaction: the old shares stop working at that
instant. The root key, and so the barrier's keyring, stay as they are.

With `require_verification` the new shares are returned but held back: `verify_update` must bring a threshold of
the NEW shares with the verification nonce, proving that the operators hold them, before anything is written. A
wrong set of new shares rotates the verification nonce, as in Vault.

Sealing forgets a rekey in progress and the shares it collected (Vault's preSeal). PGP-encrypted shares and their
backup are not supported (400). The helpers above `Rekey` are shared with `generate_root.py`; no share, KEK or
root key is ever logged or kept beyond the operation that needs it.
"""

import asyncio
import base64
import dataclasses
import hmac
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..sdk.errors import InternalError, InvalidRequest, Sealed
from . import seal as seal_module
from .seal import SealConfig

if TYPE_CHECKING:
    from .core import Core

logger = logging.getLogger(__name__)

key_bytes_min = 16  # Vault's barrier.KeyLength() minimum: anything shorter is refused before it is collected
key_bytes_max = seal_module.key_bytes + 1  # a Shamir share of the 32-byte KEK: the key plus its x-coordinate
nonce_random_bytes = 16  # a nonce is a UUID-shaped string of these

assert key_bytes_min <= seal_module.key_bytes < key_bytes_max


# --- what rekey and generate-root share ------------------------------------------------------------------


class KeyShares:
    """Unseal shares collected towards a threshold. A share given twice is refused, as Vault does."""

    def __init__(self) -> None:
        self._shares: list[bytes] = []

    def __repr__(self) -> str:  # never the shares themselves
        return f"KeyShares({len(self._shares)} collected)"

    @property
    def count(self) -> int:
        return len(self._shares)

    def add(self, share: bytes, duplicate_message: str) -> int:
        if any(hmac.compare_digest(share, existing) for existing in self._shares):
            raise InvalidRequest(duplicate_message)
        self._shares.append(bytes(share))
        return len(self._shares)

    def take(self) -> list[bytes]:
        """Every share, forgotten here: each threshold gets one attempt, right or wrong."""
        shares, self._shares = self._shares, []
        return shares


def check_key_length(key: bytes) -> None:
    if len(key) < key_bytes_min:
        raise InvalidRequest(f"key is shorter than minimum {key_bytes_min} bytes")
    if len(key) > key_bytes_max:
        raise InvalidRequest(f"key is longer than maximum {key_bytes_max} bytes")


def require_unsealed(core: "Core") -> None:
    if core.barrier.sealed or core.router is None:
        raise Sealed()


async def seal_config(core: "Core", missing_message: str) -> SealConfig:
    """The shares and threshold of the quorum operators hold: unseal keys (Shamir) or recovery keys (auto)."""
    if core.seal.config is None:
        await core.seal.load_config()
    config = core.seal.quorum_config()
    if config is None:
        raise InvalidRequest(missing_message)
    return config


def new_nonce(core: "Core") -> str:
    return seal_module.format_uuid(core.randbytes(nonce_random_bytes))


def random_below(randbytes: Callable[[int], bytes], bound: int) -> int:
    """Uniform in [0, bound) from the injected source, by rejection, so a seeded test replays."""
    assert 0 < bound <= 256
    while True:
        value = randbytes(1)[0]
        if value < 256 - 256 % bound:
            return value % bound


def combine(shares: list[bytes], threshold: int, failure: str) -> bytes:
    """The key from `threshold` shares; with a threshold of one the share is the key itself."""
    return seal_module.combine_shares(shares, threshold, failure)


async def verify_quorum(core: "Core", shares: list[bytes]) -> seal_module.Quorum:
    """What a threshold of the quorum's shares proves (the seal checks them); InvalidRequest when they are wrong."""
    return await core.seal.verify_quorum(shares)


# --- the rekey operation -----------------------------------------------------------------------------------


@dataclasses.dataclass
class _NewKeys:
    """A rekey's result until it is written."""

    kek: bytes = dataclasses.field(repr=False)  # the new quorum key: a KEK, or a recovery key
    ops: list = dataclasses.field(repr=False)  # the writes that install it (the seal's quorum_ops)
    guarded_path: str  # the stored value there must still be `replaces` at the commit
    replaces: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass
class _RekeyState:
    unseal: object = dataclasses.field(repr=False)  # core.router when it began: the core makes one per unseal
    nonce: str
    config: SealConfig  # the NEW shares and threshold
    verification_required: bool
    shares: KeyShares = dataclasses.field(default_factory=KeyShares)  # CURRENT unseal shares
    new_keys: _NewKeys | None = None  # invariant: set exactly while verification is pending
    verification_nonce: str = ""  # invariant: "" exactly when new_keys is None
    verification_shares: KeyShares = dataclasses.field(default_factory=KeyShares)  # NEW shares


class Rekey:
    """The barrier rekey of one core: sys/rekey/init, update and verify. Raises sdk errors for the HTTP table."""

    def __init__(self, core: "Core", target: str = "barrier"):
        assert target in ("barrier", "recovery")
        self._core = core
        self.target = target  # sys/rekey (the unseal keys of a Shamir seal) or sys/rekey-recovery-key (auto seals)
        self._lock = asyncio.Lock()  # one step at a time: a step awaits storage between its checks and writes
        self._state: _RekeyState | None = None

    def _current(self) -> _RekeyState | None:
        if self._state is not None and self._state.unseal is not self._core.router:
            self._state = None  # the vault sealed since it began
        return self._state

    # --- sys/rekey/init ------------------------------------------------------------------------------

    def _check_target(self) -> None:
        seal_type = self._core.seal.type
        if self.target == "barrier" and seal_type != "shamir":
            raise InvalidRequest(f"seal type {seal_type} has recovery keys: rekey them with sys/rekey-recovery-key")
        if self.target == "recovery" and seal_type == "shamir":
            raise InvalidRequest("recovery keys are not supported by seal type shamir")

    async def status(self) -> dict:
        """GET sys/rekey/init: Vault's RekeyStatusResponse."""
        self._check_target()
        config = await seal_config(self._core, "server is not yet initialized")
        require_unsealed(self._core)
        status = {
            "nonce": "", "started": False, "t": 0, "n": 0, "progress": 0, "required": config.secret_threshold,
            "pgp_fingerprints": None, "backup": False, "verification_required": False,
        }
        state = self._current()
        if state is not None:
            status.update(
                nonce=state.nonce, started=True, t=state.config.secret_threshold, n=state.config.secret_shares,
                progress=state.shares.count, verification_required=state.verification_required,
            )
            if state.verification_nonce:
                status["verification_nonce"] = state.verification_nonce
        return status

    async def start(self, body: dict) -> dict:
        """PUT sys/rekey/init with lower-case `body` keys. Answers the status (200 in Vault, not 204)."""
        self._check_target()
        config, verification_required = _start_parameters(body)
        async with self._lock:
            require_unsealed(self._core)
            if self._current() is not None:
                raise InvalidRequest("rekey already in progress")
            nonce = new_nonce(self._core)
            self._state = _RekeyState(self._core.router, nonce, config, verification_required)
        logger.info(
            "rekey initialized: nonce=%s shares=%d threshold=%d verification_required=%s",
            nonce, config.secret_shares, config.secret_threshold, verification_required,
        )
        return await self.status()

    async def cancel(self) -> None:
        """DELETE sys/rekey/init (204)."""
        async with self._lock:
            require_unsealed(self._core)
            self._state = None

    # --- sys/rekey/update ----------------------------------------------------------------------------

    async def update(self, key: bytes, nonce: str) -> dict:
        """One current unseal share. Below the threshold: the status; at it: the new shares (Vault's
        RekeyUpdateResponse), in effect at once unless verification is required."""
        check_key_length(key)
        async with self._lock:
            require_unsealed(self._core)
            current = await seal_config(self._core, "Vault is not initialized")
            state = self._current()
            if state is None:
                raise InvalidRequest("no barrier rekey in progress")
            if state.new_keys is not None:
                raise InvalidRequest(
                    "rekey operation already finished; verification must be performed; "
                    f"nonce for the verification operation is {_quoted(state.verification_nonce)}"
                )
            if nonce != state.nonce:
                raise InvalidRequest(
                    f"incorrect nonce supplied; nonce for this rekey operation is {_quoted(state.nonce)}"
                )
            state.shares.add(key, "given key has already been provided during this generation operation")
            if state.shares.count < current.secret_threshold:
                return await self.status()
            quorum = await verify_quorum(self._core, state.shares.take())
            new_shares, new_keys = await self._new_keys(state.config, quorum)
            result = {
                "nonce": nonce, "complete": True, "keys": [share.hex() for share in new_shares],
                "keys_base64": [base64.b64encode(share).decode() for share in new_shares],
                "pgp_fingerprints": None, "backup": False, "verification_required": state.verification_required,
            }
            if state.verification_required:
                state.new_keys, state.verification_nonce = new_keys, new_nonce(self._core)
                result["verification_nonce"] = state.verification_nonce
                return result
            await self._commit(state, new_keys)
            return result

    async def _new_keys(self, config: SealConfig, quorum: seal_module.Quorum) -> tuple[list[bytes], _NewKeys]:
        kek = self._core.randbytes(seal_module.key_bytes)
        shares = seal_module.split_key(kek, config.secret_shares, config.secret_threshold, self._core.randbytes)
        guarded_path, ops = await self._core.seal.quorum_ops(kek, config, quorum)
        return shares, _NewKeys(kek, ops, guarded_path, quorum.replaces)

    async def _commit(self, state: _RekeyState, new_keys: _NewKeys) -> None:
        """Write the new wrapping and the config that describes its shares, together. Holds the lock."""
        assert self._lock.locked()
        core = self._core
        stored = await core.barrier.raw_get(new_keys.guarded_path)
        if stored is None or not hmac.compare_digest(stored, new_keys.replaces):
            self._state = None
            raise InternalError("the stored keys changed during the rekey; start the rekey again")
        # The paths are read while sealed, so they are plaintext; one transaction, so a crash leaves either the
        # old shares or the new ones working, never a config that does not describe the stored key.
        await core.barrier.raw_transaction(new_keys.ops)
        await core.seal.load_config()
        self._state = None
        logger.info(
            "unseal keys rekeyed: nonce=%s shares=%d threshold=%d",
            state.nonce, state.config.secret_shares, state.config.secret_threshold,
        )

    # --- sys/rekey/verify ----------------------------------------------------------------------------

    async def verify_status(self) -> dict:
        """GET sys/rekey/verify."""
        await seal_config(self._core, "server is not yet initialized")
        require_unsealed(self._core)
        state = self._current()
        if state is None:
            raise InvalidRequest("no rekey configuration found")
        return {
            "nonce": state.verification_nonce, "started": state.new_keys is not None,
            "t": state.config.secret_threshold, "n": state.config.secret_shares,
            "progress": state.verification_shares.count,
        }

    async def verify_update(self, key: bytes, nonce: str) -> dict:
        """One NEW share. Below the new threshold: the verify status; at it, when the shares make the new KEK,
        the rekey takes effect: `{"nonce", "complete": true}`."""
        check_key_length(key)
        async with self._lock:
            require_unsealed(self._core)
            state = self._current()
            if state is None:
                raise InvalidRequest("no rekey in progress")
            if state.new_keys is None:
                raise InvalidRequest("no rekey verification in progress")
            if nonce != state.verification_nonce:
                raise InvalidRequest(
                    f"incorrect nonce supplied; nonce for this verify operation is {_quoted(state.verification_nonce)}"
                )
            state.verification_shares.add(key, "given key has already been provided during this verify operation")
            if state.verification_shares.count < state.config.secret_threshold:
                return await self.verify_status()
            shares, complete = state.verification_shares.take(), False
            try:
                kek = combine(shares, state.config.secret_threshold, "failed to compute key for verification")
                if not hmac.compare_digest(kek, state.new_keys.kek):
                    raise InvalidRequest("rekey verification failed; incorrect key shares supplied")
                await self._commit(state, state.new_keys)
                complete = True
            finally:
                if not complete:  # a failed attempt gets a fresh nonce, as in Vault
                    state.verification_nonce = new_nonce(self._core)
            return {"nonce": state.verification_nonce, "complete": True}

    async def verify_restart(self) -> dict:
        """DELETE sys/rekey/verify: forget the new shares given so far, draw a new verification nonce, and answer
        the verify status. The new keys themselves stay pending."""
        async with self._lock:
            require_unsealed(self._core)
            state = self._current()
            if state is not None and state.new_keys is not None:
                state.verification_shares.take()
                state.verification_nonce = new_nonce(self._core)
        return await self.verify_status()


def _start_parameters(body: dict) -> tuple[SealConfig, bool]:
    """Vault's checks on a rekey request, in Vault's order, with its messages (all 400 here)."""
    if body.get("pgp_keys"):
        raise InvalidRequest("pgp_keys is not supported by this server")
    if body.get("backup"):
        raise InvalidRequest("cannot request a backup of the new keys without providing PGP keys for encryption")
    shares, threshold = _integer(body, "secret_shares"), _integer(body, "secret_threshold")
    if threshold > shares:
        raise InvalidRequest("provided threshold greater than the total shares")
    try:
        seal_module.validate_shares(shares, threshold)
    except InvalidRequest as error:  # Vault answers these 500; they are the caller's mistake, so 400 here
        raise InvalidRequest(f"invalid rekey seal configuration: {error.messages[0]}") from None
    verification_required = body.get("require_verification", False)
    if not isinstance(verification_required, bool):
        raise InvalidRequest("require_verification must be a boolean")
    return SealConfig("shamir", shares, threshold), verification_required


def _integer(body: dict, name: str) -> int:
    value = body.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer")
    return value


def _quoted(text: str) -> str:
    """Go's %q for the nonces in Vault's messages."""
    return json.dumps(text)
