"""The PKCS#11 side of the auto seal: an AES key inside an HSM encrypts small secrets (the root key and the
recovery key) with CKM_AES_GCM, through python-pkcs11. `seal.AutoSeal` calls it in a worker thread.

    HsmError    any HSM fault or refused blob; the message is ONE line that names the cause

A `Pkcs11Wrapper` is built from the `[seal]` table (`vaultd.config.SealConfig`) and reads the pin from
`pin_env` or a `pin_file` that only its owner may read; the pin is never logged nor put in a message. Every call
opens what it needs lazily: pin → library → token (by `slot`, else `token_label`) → a logged-in R/W session
→ the key by `key_label` (generated when missing if `generate_key`: a 256-bit AES token object, private,
sensitive, never extractable, for encrypt and decrypt only).

Faults: a missing library, a missing token, a refused pin, a deleted key or a token removed while running each
raise HsmError, and drop what was cached: the NEXT call starts from scratch, re-initialising the library
(C_Finalize + C_Initialize), so a token created or restored in the meantime is seen and a node unseals without
a restart once the HSM is back.

The blob `encrypt` returns is msgpack, a map of exactly these keys:

    {"version": 1, "key_label": str, "mechanism": "CKM_AES_GCM", "iv": bin 12, "ciphertext": bin (ct ‖ tag 16)}

The GCM additional data is the caller's `aad` alone. `decrypt` uses the key the blob names, so a blob made under
an older `key_label` still opens while that key exists in the token. Several AES keys with one label (nodes
that generated the key at the same moment) are all tried on decrypt; encrypt uses the one with the smallest
CKA_ID, the same choice in every process.

Sharing: C_Initialize, login state and sessions belong to the process, not to one wrapper, so the wrappers of
one library share a `_Library`: one lock around every call, one logged-in session per slot, and a generation
number that a re-initialisation bumps, telling the other wrappers that their sessions and keys are gone.
"""

import contextlib
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, TypeVar

import msgpack
import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, MechanismFlag, ObjectClass

logger = logging.getLogger(__name__)

blob_version = 1
mechanism_name = "CKM_AES_GCM"  # the only one: an AEAD, as OpenBao allows
key_bits = 256
iv_bytes = 12
tag_bits = 128
pin_bytes_max = 256
plaintext_bytes_max = 64 * 1024  # the seal wraps keys, never data
label_bytes_max = 256
blob_bytes_max = plaintext_bytes_max + label_bytes_max + 256  # ciphertext + label + the msgpack frame
blob_keys = frozenset({"version", "key_label", "mechanism", "iv", "ciphertext"})
assert iv_bytes == 12 and tag_bits == 128  # GCM's recommended sizes; the blob format depends on them
assert blob_bytes_max > plaintext_bytes_max + tag_bits // 8 + iv_bytes + label_bytes_max

_T = TypeVar("_T")


class HsmError(Exception):
    """The HSM cannot do what was asked now; the message is one line that names the cause."""


class SealSettings(Protocol):
    """The fields of `vaultd.config.SealConfig` the wrapper reads (vaultd.core does not import vaultd.config)."""

    type: str
    lib: str
    token_label: str
    slot: int | None
    pin_env: str
    pin_file: os.PathLike | None
    key_label: str
    mechanism: str
    generate_key: bool


# --- the library, shared by the wrappers of this process -------------------------------------------------------


class _Library:
    """One PKCS#11 library as this process uses it."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()  # held around every call into the library, by every wrapper
        self.generation = 0  # invariant: bumped by every C_Finalize; older sessions and key handles are dead
        self.sessions: dict[int, pkcs11.Session] = {}  # slot id -> the logged-in session of this generation
        self.wrappers = 0  # open wrappers; the last one to close finalizes the library

    def load(self, reinitialize: bool):
        """The library, initialised; with `reinitialize`, finalized and initialised again first."""
        try:
            lib = pkcs11.lib(self.path)
        except pkcs11.PKCS11Error as error:
            message = str(error)
            if message.startswith(("OS exception while loading", "Unknown exception while loading")):
                cause = message.split(f"loading {self.path}: ", 1)[-1]
                raise HsmError(f"pkcs11: cannot load library {self.path}: {cause}") from None
            raise HsmError(f"pkcs11: cannot initialise library {self.path} ({_code(error)}){self._hint()}") \
                from None
        if reinitialize:
            self.sessions.clear()
            self.generation += 1
            try:
                lib.reinitialize()
            except pkcs11.PKCS11Error as error:
                raise HsmError(f"pkcs11: cannot initialise library {self.path} ({_code(error)}){self._hint()}") \
                    from None
        return lib

    def finalize(self) -> None:
        self.sessions.clear()
        self.generation += 1
        with contextlib.suppress(pkcs11.PKCS11Error):
            pkcs11.lib(self.path).finalize()

    def _hint(self) -> str:
        if "softhsm" not in os.path.basename(self.path).lower():
            return ""
        return f"; SoftHSM2 fails so when SOFTHSM2_CONF ({os.environ.get('SOFTHSM2_CONF', 'unset')}) or its " \
               "tokendir is missing"


_libraries: dict[str, _Library] = {}
_libraries_lock = threading.Lock()


def _library(path: str) -> _Library:
    with _libraries_lock:
        library = _libraries.setdefault(path, _Library(path))
        library.wrappers += 1
        return library


# --- the wrapper -----------------------------------------------------------------------------------------------


class Pkcs11Wrapper:
    """An AES key in an HSM that encrypts and decrypts small secrets; see the module doc. Blocking and
    thread-safe: the core calls it through asyncio.to_thread. Construction opens nothing; `check` does.

    `environ` is where `pin_env` is looked up (default os.environ). The library itself reads its own settings
    (SoftHSM2: SOFTHSM2_CONF) from the process environment when it is initialised."""

    def __init__(self, config: SealSettings, environ: Mapping[str, str] | None = None):
        assert config.type == "pkcs11", config.type
        if not config.pin_env and config.pin_file is None:
            raise HsmError("pkcs11: the seal needs pin_env or pin_file")
        if config.mechanism != mechanism_name:
            raise HsmError(f"pkcs11: mechanism {config.mechanism!r} is not supported; use {mechanism_name}")
        if not config.key_label or len(config.key_label.encode()) > label_bytes_max:
            raise HsmError(f"pkcs11: key_label must be 1 to {label_bytes_max} bytes")
        self.config = config
        self.key_label = config.key_label
        self._environ = os.environ if environ is None else environ
        self._library = _library(config.lib)
        self._closed = False
        # Caches, dropped after any fault. invariant: _session is None or belongs to _library's _generation.
        self._fresh = True  # the next call re-initialises the library (first use, or after a fault)
        self._generation = -1
        self._session: pkcs11.Session | None = None
        self._keys: dict[str, list] = {}  # label -> the AES keys with that label, smallest CKA_ID first

    def __enter__(self) -> "Pkcs11Wrapper":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Pkcs11Wrapper lib={self.config.lib!r} key_label={self.key_label!r}>"

    # --- the API ---------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Open the library, the token and the session, log in and find (or generate) the key now."""
        self._run(lambda session: self._keys_labelled(session, self.key_label, self.config.generate_key))

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """`plaintext` encrypted by the HSM under `key_label` with AES-GCM and `aad`; returns the blob."""
        if len(plaintext) > plaintext_bytes_max:
            raise HsmError(f"pkcs11: {len(plaintext)} bytes to encrypt; the seal takes {plaintext_bytes_max} at most")

        def operation(session) -> bytes:
            key = self._keys_labelled(session, self.key_label, self.config.generate_key)[0]
            iv = os.urandom(iv_bytes)
            with _step(f"encrypting with key {self.key_label!r} failed"):
                ciphertext = key.encrypt(bytes(plaintext), mechanism=Mechanism.AES_GCM,
                                         mechanism_param=GCMParams(iv, bytes(aad), tag_bits))
            if len(ciphertext) != len(plaintext) + tag_bits // 8:
                raise HsmError(f"pkcs11: the HSM returned {len(ciphertext)} bytes of AES-GCM ciphertext for "
                               f"{len(plaintext)} bytes of plaintext")
            return _encode_blob(self.key_label, iv, ciphertext)

        return self._run(operation)

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of a blob from `encrypt`, with the key the blob names and `aad`."""
        label, iv, ciphertext = _decode_blob(blob)

        def operation(session) -> bytes:
            self._keys.pop(label, None)  # search again: another process may have made a key with this label
            keys = self._keys_labelled(session, label, False)
            failures = []
            for key in keys:
                try:
                    return key.decrypt(ciphertext, mechanism=Mechanism.AES_GCM,
                                       mechanism_param=GCMParams(iv, bytes(aad), tag_bits))
                except (pkcs11.exceptions.GeneralError, pkcs11.exceptions.FunctionFailed,
                        pkcs11.exceptions.EncryptedDataInvalid, pkcs11.exceptions.EncryptedDataLenRange,
                        pkcs11.exceptions.DataInvalid, pkcs11.exceptions.DataLenRange) as error:
                    failures.append(_code(error))  # a tag mismatch: SoftHSM2 says CKR_GENERAL_ERROR
                except pkcs11.PKCS11Error as error:
                    raise HsmError(f"pkcs11: decrypting with key {label!r} failed ({_explain(error)})") from None
            raise HsmError(f"pkcs11: decryption failed with key {label!r} ({', '.join(sorted(set(failures)))}): "
                           "a wrong AAD, a tampered blob or another key with this label")

        return self._run(operation)

    @staticmethod
    def blob_key_label(blob: bytes) -> str:
        """The label of the key that made `blob`."""
        return _decode_blob(blob)[0]

    def close(self) -> None:
        """Forget the session; the last wrapper of a library to close finalizes it (C_Finalize)."""
        with self._library.lock:
            if self._closed:
                return
            self._closed = True
            self._drop()
            with _libraries_lock:
                self._library.wrappers -= 1
                last = self._library.wrappers == 0
            if last:
                self._library.finalize()

    # --- sessions and keys -----------------------------------------------------------------------------------

    def _run(self, operation: Callable[[pkcs11.Session], _T]) -> _T:
        with self._library.lock:
            if self._closed:
                raise HsmError("pkcs11: the wrapper is closed")
            try:
                return operation(self._connect())
            except pkcs11.PKCS11Error as error:
                self._drop()
                raise HsmError(f"pkcs11: {_explain(error)}") from None
            except BaseException:
                self._drop()
                raise

    def _drop(self) -> None:
        self._fresh, self._session, self._keys = True, None, {}

    def _connect(self) -> pkcs11.Session:
        """The logged-in session, opened now when there is none for this generation of the library."""
        library = self._library
        if not self._fresh and self._session is not None and self._generation == library.generation:
            return self._session
        self._session, self._keys = None, {}
        pin = self._read_pin()
        lib = library.load(reinitialize=self._fresh)
        self._fresh = False
        token = self._find_token(lib)
        slot_id = token.slot.slot_id
        session = library.sessions.get(slot_id)
        if session is None:
            label = f"token {token.label!r} in slot {slot_id}"
            with _step(f"cannot log in to {label}", {pkcs11.exceptions.PinIncorrect: "the pin was refused"}):
                session = token.open(rw=True, user_pin=pin)
            library.sessions[slot_id] = session
        self._session, self._generation = session, library.generation
        return session

    def _find_token(self, lib):
        config = self.config
        with _step(f"cannot list the tokens of {config.lib}"):
            if config.slot is not None:
                slots = [slot for slot in lib.get_slots(token_present=True) if slot.slot_id == config.slot]
                if not slots:
                    raise HsmError(f"pkcs11: no token in slot {config.slot}")
                token = slots[0].get_token()
                if config.token_label and token.label != config.token_label:
                    raise HsmError(f"pkcs11: the token in slot {config.slot} is labelled {token.label!r}, not "
                                   f"{config.token_label!r}")
                return token
            tokens = list(lib.get_tokens(token_label=config.token_label))
        if not tokens:
            raise HsmError(f"pkcs11: no token labelled {config.token_label!r}")
        if len(tokens) > 1:
            raise HsmError(f"pkcs11: {len(tokens)} tokens are labelled {config.token_label!r}; set seal.slot to "
                           "choose one")
        return tokens[0]

    def _keys_labelled(self, session, label: str, generate: bool) -> list:
        """The AES secret keys labelled `label`, smallest CKA_ID first; with `generate`, one is made if none is."""
        if label in self._keys:
            return self._keys[label]
        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.LABEL: label}
        with _step(f"cannot search the token for key {label!r}"):
            keys = list(session.get_objects(template))
        if not keys and generate:
            keys = [self._generate(session, label)]
        if not keys:
            why = ("(the key this blob was encrypted with)" if label != self.key_label else
                   "(decrypting never generates a key)" if generate is False and self.config.generate_key else
                   "and generate_key is false")
            raise HsmError(f"pkcs11: no AES key labelled {label!r} {why}")
        with _step(f"cannot read the id of key {label!r}"):
            keys.sort(key=lambda key: bytes(key.id or b""))
        if len(keys) > 1:
            logger.warning("pkcs11: %d AES keys are labelled %r; encrypting with the one of the smallest CKA_ID, "
                           "decrypting with each", len(keys), label)
        self._keys[label] = keys
        return keys

    def _generate(self, session, label: str):
        logger.info("pkcs11: generating the %d-bit AES key %r in the token", key_bits, label)
        with _step(f"cannot generate the AES key {label!r}"):
            return session.generate_key(
                KeyType.AES, key_bits, label=label, id=os.urandom(16), store=True,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template={Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})

    def _read_pin(self) -> str:
        """The pin, from `pin_env` when it is set, else from `pin_file`. Never logged, never in a message."""
        if self.config.pin_env:
            name = self.config.pin_env
            pin = self._environ.get(name)
            if pin is None:
                raise HsmError(f"pkcs11: the pin environment variable {name} is not set")
            where = f"the pin environment variable {name}"
        else:
            pin = _read_pin_file(self.config.pin_file)
            where = f"the pin file {self.config.pin_file}"
        if not pin:
            raise HsmError(f"pkcs11: {where} is empty")
        if len(pin.encode()) > pin_bytes_max:
            raise HsmError(f"pkcs11: {where} holds more than {pin_bytes_max} bytes")
        return pin


def _read_pin_file(path) -> str:
    try:
        with open(path, "rb") as file:
            mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
            if mode & 0o077:
                raise HsmError(f"pkcs11: pin file {path} must be mode 0600 (no group or other access), not {mode:04o}")
            data = file.read(pin_bytes_max + 1)
    except OSError as error:
        raise HsmError(f"pkcs11: cannot read the pin file {path}: {error.strerror}") from None
    try:
        return data.decode().rstrip("\r\n")
    except UnicodeDecodeError:
        raise HsmError(f"pkcs11: the pin file {path} is not UTF-8") from None


# --- the blob ----------------------------------------------------------------------------------------------------


def _encode_blob(label: str, iv: bytes, ciphertext: bytes) -> bytes:
    return msgpack.packb({"version": blob_version, "key_label": label, "mechanism": mechanism_name, "iv": iv,
                          "ciphertext": ciphertext}, use_bin_type=True)


def _decode_blob(blob: bytes) -> tuple[str, bytes, bytes]:
    """(key_label, iv, ciphertext) of a blob, checked field by field."""
    if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) > blob_bytes_max:
        raise HsmError("pkcs11: not a pkcs11 seal blob (not bytes, or too long)")
    try:
        fields = msgpack.unpackb(bytes(blob), raw=False, strict_map_key=True, max_bin_len=blob_bytes_max,
                                 max_str_len=label_bytes_max, max_array_len=16, max_map_len=16)
    except Exception:  # noqa: BLE001 - msgpack raises several types for bad input; all mean the same here
        raise HsmError("pkcs11: not a pkcs11 seal blob (not msgpack)") from None
    if not isinstance(fields, dict) or set(fields) != blob_keys:
        raise HsmError(f"pkcs11: not a pkcs11 seal blob (want the keys {', '.join(sorted(blob_keys))})")
    if type(fields["version"]) is not int or fields["version"] != blob_version:
        raise HsmError(f"pkcs11: seal blob version {fields['version']!r} is not supported (want {blob_version})")
    if fields["mechanism"] != mechanism_name:
        raise HsmError(f"pkcs11: seal blob mechanism {fields['mechanism']!r} is not supported")
    label, iv, ciphertext = fields["key_label"], fields["iv"], fields["ciphertext"]
    if not isinstance(label, str) or not label:
        raise HsmError("pkcs11: seal blob has no key_label")
    if not isinstance(iv, bytes) or len(iv) != iv_bytes:
        raise HsmError(f"pkcs11: seal blob iv must be {iv_bytes} bytes")
    if not isinstance(ciphertext, bytes) or len(ciphertext) < tag_bits // 8:
        raise HsmError("pkcs11: seal blob ciphertext is shorter than the GCM tag")
    return label, iv, ciphertext


# --- errors ------------------------------------------------------------------------------------------------------

_ckr_names = {  # where the CKR_ name is not the exception's name in upper snake case
    "TokenNotRecognised": "CKR_TOKEN_NOT_RECOGNIZED",
    "FunctionCancelled": "CKR_FUNCTION_CANCELED",
    "AnotherUserAlreadyLoggedIn": "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
    "RandomNoRNG": "CKR_RANDOM_NO_RNG",
    "SlotIDInvalid": "CKR_SLOT_ID_INVALID",
}
_explanations = {
    "ObjectHandleInvalid": "the key was deleted or the token removed",
    "KeyHandleInvalid": "the key was deleted or the token removed",
    "TokenNotPresent": "the token was removed",
    "DeviceRemoved": "the token was removed",
    "DeviceError": "the HSM reports a device error",
    "SessionHandleInvalid": "the session was lost",
    "SessionClosed": "the session was lost",
    "UserNotLoggedIn": "the session is no longer logged in",
    "PinIncorrect": "the pin was refused",
    "PinLocked": "the user pin is locked",
    "PinExpired": "the user pin has expired",
    "UserPinNotInitialized": "the token's user pin is not initialised",
}


def _code(error: pkcs11.PKCS11Error) -> str:
    """CKR_PIN_INCORRECT for PinIncorrect(); the message for a bare PKCS11Error."""
    name = type(error).__name__
    if type(error) is pkcs11.PKCS11Error:
        return " ".join(str(error).split()) or "PKCS11Error"
    return _ckr_names.get(name) or "CKR_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def _explain(error: pkcs11.PKCS11Error) -> str:
    explanation = _explanations.get(type(error).__name__)
    return f"{_code(error)}: {explanation}" if explanation else _code(error)


@contextlib.contextmanager
def _step(what: str, causes: Mapping[type, str] | None = None) -> Iterator[None]:
    """Turn a PKCS11Error into HsmError("pkcs11: <what> (CKR_...: <explanation>)"), or, for an error in
    `causes`, into HsmError("pkcs11: <cause> (CKR_...)")."""
    try:
        yield
    except pkcs11.PKCS11Error as error:
        cause = (causes or {}).get(type(error))
        if cause:
            raise HsmError(f"pkcs11: {cause} ({_code(error)})") from None
        raise HsmError(f"pkcs11: {what} ({_explain(error)})") from None
