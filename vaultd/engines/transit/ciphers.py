"""Encryption and decryption with one version of a key, as keysutil's Policy.Encrypt and Policy.Decrypt do
them, so that ciphertexts cross between this engine and Vault:

    vault:v<version>:base64(nonce || ciphertext || tag)     AES-GCM and ChaCha20-Poly1305, 96-bit nonce
    vault:v<version>:base64(RSA-OAEP(SHA-256) ciphertext)   RSA keys

A derived key is HKDF-SHA256(version key, info = context). A convergent key (always derived) takes
HKDF-SHA256 output of 64 bytes: the first 32 encrypt, the other 32 key HMAC-SHA256(plaintext), whose first
12 bytes are the nonce (keysutil's convergent version 3), so equal plaintexts under one context encrypt alike.
"""

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from vaultd.sdk.errors import InvalidRequest

from . import material
from .inputs import go_base64, split_versioned, too_old, versioned
from .policy import KeyPolicy, KeyVersion, convergent_version_current

nonce_bytes = 12
convergent_hmac_key_bytes = 32
# Go's AEAD Open errors, which Vault returns as they are.
authentication_failed = {
    "aes128-gcm96": "cipher: message authentication failed",
    "aes256-gcm96": "cipher: message authentication failed",
    "chacha20-poly1305": "chacha20poly1305: message authentication failed",
}


def encryption_version(policy: KeyPolicy, requested: int) -> int:
    """The version an encryption uses: `requested`, or the latest for 0 (keysutil's checks and messages)."""
    if requested == 0:
        return policy.latest_version
    if requested < 0:
        raise InvalidRequest("requested version for encryption is negative")
    if requested > policy.latest_version:
        raise InvalidRequest("requested version for encryption is higher than the latest key version")
    if requested < policy.min_encryption_version:
        raise InvalidRequest("requested version for encryption is less than the minimum encryption key version")
    return requested


def encrypt(policy: KeyPolicy, requested_version: int, plaintext: bytes, context: bytes,
            associated_data: bytes | None = None) -> tuple[str, int]:
    """The ciphertext of `plaintext` and the version it used."""
    kind = policy.key_type
    if not kind.supports_encryption:
        raise InvalidRequest(f"message encryption not supported for key type {kind.name}")
    version = encryption_version(policy, requested_version)
    entry = policy.entry(version)
    if kind.family == "rsa":
        public = material.private_key(kind, entry).public_key()
        try:
            body = public.encrypt(plaintext, _oaep())
        except ValueError:
            raise InvalidRequest("failed to RSA encrypt the plaintext: crypto/rsa: message too long for RSA key size"
                                 ) from None
    else:
        body = _seal(policy, entry, plaintext, context, associated_data)
    return versioned(version, base64.b64encode(body).decode()), version


def _seal(policy: KeyPolicy, entry: KeyVersion, plaintext: bytes, context: bytes,
          associated_data: bytes | None) -> bytes:
    length = policy.key_type.size
    if not policy.convergent_encryption:
        key = material.symmetric_key(policy, entry, context, length)
        nonce = os.urandom(nonce_bytes)
    else:
        assert entry.convergent_version == convergent_version_current
        derived = material.symmetric_key(policy, entry, context, length + convergent_hmac_key_bytes)
        key, nonce = derived[:length], _convergent_nonce(derived[length:], plaintext)
    return nonce + _aead(policy.type, key).encrypt(nonce, plaintext, associated_data or None)


def _convergent_nonce(hmac_key: bytes, plaintext: bytes) -> bytes:
    mac = hmac.HMAC(hmac_key, hashes.SHA256())
    mac.update(plaintext)
    return mac.finalize()[:nonce_bytes]


def decrypt(policy: KeyPolicy, ciphertext: str, context: bytes, associated_data: bytes | None = None) -> bytes:
    """The plaintext of a `vault:v<N>:` ciphertext, or InvalidRequest with Vault's message."""
    kind = policy.key_type
    if not kind.supports_encryption:
        raise InvalidRequest(f"message decryption not supported for key type {kind.name}")
    version = decryption_version(policy, ciphertext)
    body = go_base64_or(split_versioned(ciphertext, "ciphertext")[1], "invalid ciphertext: could not decode base64")
    entry = policy.entry(version)
    if kind.family == "rsa":
        try:
            return material.private_key(kind, entry).decrypt(body, _oaep())
        except ValueError:
            raise InvalidRequest("failed to RSA decrypt the ciphertext: crypto/rsa: decryption error") from None
    key = material.symmetric_key(policy, entry, context, kind.size)[: kind.size]
    if len(body) < nonce_bytes:
        raise InvalidRequest("invalid ciphertext length")
    try:
        return _aead(kind.name, key).decrypt(body[:nonce_bytes], body[nonce_bytes:], associated_data or None)
    except InvalidTag:
        raise InvalidRequest(authentication_failed[kind.name]) from None


def decryption_version(policy: KeyPolicy, ciphertext: str) -> int:
    """The version a ciphertext names, if this key may still decrypt it. v0 means v1, as in Vault."""
    version = split_versioned(ciphertext, "ciphertext")[0] or 1
    if version > policy.latest_version:
        raise InvalidRequest("invalid ciphertext: version is too new")
    if version < policy.min_decryption_version:
        raise InvalidRequest(too_old)
    return version


def go_base64_or(text: str, message: str) -> bytes:
    try:
        return go_base64(text)
    except ValueError:
        raise InvalidRequest(message) from None


def _aead(key_type: str, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return ChaCha20Poly1305(key) if key_type == "chacha20-poly1305" else AESGCM(key)


def _oaep() -> padding.OAEP:
    """Go's rsa.EncryptOAEP(sha256.New(), ..., label nil): MGF1 with SHA-256 too."""
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
