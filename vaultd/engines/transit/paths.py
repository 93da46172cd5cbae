"""Transit's paths, declared as data (Vault's builtin/logical/transit `Backend`). Every handler takes the
mount's KeyLocks first; `transit_backend()` binds a fresh set, so build one backend per mount."""

import functools
from collections.abc import Awaitable, Callable

from vaultd.sdk.backend import Backend
from vaultd.sdk.locks import KeyLocks
from vaultd.sdk.path import Field, FieldType, Handler, Path
from vaultd.sdk.request import Operation, Response

from . import backup, encryption, keys, signing, tools
from .backup import name_pattern

STRING, INT, BOOL, RAW, DURATION = FieldType.STRING, FieldType.INT, FieldType.BOOL, FieldType.RAW, FieldType.DURATION
READ, CREATE, UPDATE, DELETE, LIST = (
    Operation.READ, Operation.CREATE, Operation.UPDATE, Operation.DELETE, Operation.LIST,
)

_name = {"name": Field(STRING, "Name of the key.")}
_batch = {"batch_input": Field(RAW, "A list of items to process in one request; each answer keeps its place.")}
_context = {"context": Field(STRING, "Base64 context for key derivation; required by derived keys.")}
_key_version = {"key_version": Field(INT, "The key version to use; 0 for the latest.", 0)}
_partial = {"partial_failure_response_code": Field(INT, "200 answers a batch in which some items failed with 200.")}
_aead = {
    **_context,
    "nonce": Field(STRING, "Base64 nonce; refused, as by Vault for every key since convergent version 2."),
    "associated_data": Field(STRING, "Base64 associated data, authenticated with AES-GCM or ChaCha20-Poly1305."),
}
_settings = {
    "exportable": Field(BOOL, "Whether the key's private material may be exported; cannot be turned off.", False),
    "allow_plaintext_backup": Field(BOOL, "Whether backup/<name> may return the key; cannot be turned off.", False),
    "auto_rotate_period": Field(DURATION, "Stored and reported; 0 or at least an hour.", 0),
}
_key_fields = {
    **_name,
    **_settings,
    "type": Field(STRING, "aes128-gcm96, aes256-gcm96, chacha20-poly1305, ed25519, ecdsa-p256, ecdsa-p384, "
                          "ecdsa-p521, rsa-2048, rsa-3072, rsa-4096 or hmac.", "aes256-gcm96"),
    "derived": Field(BOOL, "Derive a key per context with HKDF-SHA256.", False),
    "convergent_encryption": Field(BOOL, "Equal plaintexts under one context encrypt alike (derived only).", False),
    "key_size": Field(INT, "Bytes, for hmac keys only: 32 to 512 (default 32).", 0),
    **_context,
}
_config_fields = {
    **_name,
    **{name: Field(field.type, field.description) for name, field in _settings.items()},
    "min_decryption_version": Field(INT, "The oldest version that may decrypt or verify."),
    "min_encryption_version": Field(INT, "The oldest version that may encrypt or sign; 0 for any."),
    "deletion_allowed": Field(BOOL, "Whether DELETE keys/<name> is allowed."),
}
_encrypt_fields = {
    **_name, **_aead, **_key_version, **_batch, **_partial,
    "plaintext": Field(STRING, "Base64 plaintext."),
    "type": Field(STRING, "The type of key to create when the key does not exist.", "aes256-gcm96"),
    "convergent_encryption": Field(BOOL, "Whether a key this creates is convergent.", False),
}
_decrypt_fields = {**_name, **_aead, **_batch, **_partial, "ciphertext": Field(STRING, "A vault:v<N>: ciphertext.")}
_rewrap_fields = {**_decrypt_fields, **_key_version}
_datakey_fields = {
    **_name, **_aead, **_key_version,
    "plaintext": Field(STRING, "'plaintext' to return the new key too, or 'wrapped'."),
    "bits": Field(INT, "The new key's length: 128, 256 or 512 bits.", 256),
}
_algorithm = {"urlalgorithm": Field(STRING, "The hash algorithm, given in the URL.")}
_hmac_fields = {
    **_name, **_algorithm, **_key_version, **_batch,
    "input": Field(STRING, "Base64 input."),
    "algorithm": Field(STRING, "sha1, sha2-224, sha2-256, sha2-384, sha2-512, sha3-224 ... sha3-512.", "sha2-256"),
}
_signature_fields = {
    **_hmac_fields, **_context,
    "hash_algorithm": Field(STRING, "The hash of the input that ECDSA and RSA keys sign.", "sha2-256"),
    "algorithm": Field(STRING, "Deprecated: use hash_algorithm.", "sha2-256"),
    "prehashed": Field(BOOL, "Whether the input is already the hash.", False),
    "signature_algorithm": Field(STRING, "For RSA keys: pss (default) or pkcs1v15."),
    "marshaling_algorithm": Field(STRING, "asn1 (default) or jws.", "asn1"),
    "salt_length": Field(STRING, "For RSA PSS: auto (default), hash, or a number of bytes.", "auto"),
}
_verify_fields = {
    **_signature_fields,
    "signature": Field(STRING, "The vault:v<N>: signature to check."),
    "hmac": Field(STRING, "The vault:v<N>: HMAC to check."),
}
_hash_fields = {
    **_algorithm,
    "input": Field(STRING, "Base64 input."),
    "algorithm": Field(STRING, "sha2-224, sha2-256, sha2-384, sha2-512, sha3-224 ... sha3-512.", "sha2-256"),
    "format": Field(STRING, "hex (default) or base64.", "hex"),
}
_random_fields = {
    "source": Field(STRING, "platform, seal or all; or, alone in the URL, the number of bytes."),
    "urlbytes": Field(STRING, "The number of bytes, given in the URL."),
    "bytes": Field(INT, "The number of bytes.", 32),
    "format": Field(STRING, "base64 (default) or hex.", "base64"),
}
_export_fields = {
    **_name,
    "type": Field(STRING, "encryption-key, signing-key, hmac-key or public-key."),
    "version": Field(STRING, "A version number, v<number>, or latest; all usable versions when absent."),
}
_restore_fields = {
    **_name,
    "backup": Field(STRING, "What backup/<name> returned."),
    "force": Field(BOOL, "Whether to overwrite an existing key.", False),
}


def transit_backend() -> Backend:
    """A fresh backend with its own per-key locks: build one per mount."""
    locks = KeyLocks()

    def bound(operations: dict[Operation, Callable[..., Awaitable[Response | None]]]) -> dict[Operation, Handler]:
        return {operation: functools.partial(handler, locks) for operation, handler in operations.items()}

    name = f"(?P<name>{name_pattern})"
    algorithm = "(?:/(?P<urlalgorithm>[^/]+))?"
    paths = [
        Path("keys/?", {}, bound({LIST: keys.list_keys}), help="The names of the keys."),
        Path(f"keys/{name}", _key_fields,
             bound({READ: keys.read_key, UPDATE: keys.create_key, DELETE: keys.delete_key}),
             help="Create a key, read its settings and public keys, or delete it."),
        Path(f"keys/{name}/config", _config_fields, bound({UPDATE: keys.configure_key}),
             help="Version limits, deletion, export and backup settings of a key."),
        Path(f"keys/{name}/rotate", _name, bound({UPDATE: keys.rotate_key}), help="Add a new latest version."),
        Path(f"encrypt/{name}", _encrypt_fields, bound({CREATE: encryption.encrypt, UPDATE: encryption.encrypt}),
             existence_check=encryption.key_exists,
             help="Encrypt base64 plaintexts; creates the key when it does not exist."),
        Path(f"decrypt/{name}", _decrypt_fields, bound({UPDATE: encryption.decrypt}), help="Decrypt ciphertexts."),
        Path(f"rewrap/{name}", _rewrap_fields, bound({UPDATE: encryption.rewrap}),
             help="Re-encrypt ciphertexts with the latest (or a given) version, never revealing the plaintext."),
        Path(f"datakey/(?P<plaintext>{name_pattern})/{name}", _datakey_fields, bound({UPDATE: encryption.datakey}),
             help="A new random key, encrypted with the named key."),
        Path(f"hmac/{name}{algorithm}", _hmac_fields, bound({UPDATE: signing.hmac_generate}),
             help="HMAC base64 inputs with the key's HMAC key."),
        Path(f"sign/{name}{algorithm}", _signature_fields, bound({UPDATE: signing.sign}),
             help="Sign base64 inputs with an asymmetric key."),
        Path(f"verify/{name}{algorithm}", _verify_fields, bound({UPDATE: signing.verify}),
             help="Check signatures or HMACs."),
        Path(f"hash{algorithm}", _hash_fields, bound({UPDATE: tools.hash_input}), help="Hash a base64 input."),
        Path("random(?:/(?P<source>[^/]+))?(?:/(?P<urlbytes>[^/]+))?", _random_fields,
             bound({UPDATE: tools.random_bytes}), help="Random bytes from the platform's generator."),
        Path(f"export/(?P<type>{name_pattern})/{name}(?:/(?P<version>[^/]+))?", _export_fields,
             bound({READ: keys.export_key}), help="A key's material, when the key is exportable; public keys always."),
        Path(f"backup/{name}", _name, bound({READ: backup.backup_key}), help="The whole key as one string."),
        Path(f"restore(?:/{name})?", _restore_fields, bound({UPDATE: backup.restore_key}),
             help="Restore a key from backup/<name>'s string."),
    ]
    return Backend(paths, help="Cryptography as a service: keys that never leave the mount.")
