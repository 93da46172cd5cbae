"""Key material: making a version, deriving per-context keys, and the public and exported forms of a key,
each as keysutil and Vault's transit paths produce them.

Randomness: AEAD, HMAC and ed25519 keys are os.urandom bytes, and an ECDSA private scalar is drawn from
os.urandom too. RSA keys come from OpenSSL's generator (seeded by the operating system): `cryptography`
offers no way to feed it other bytes.
"""

import base64
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vaultd.sdk.errors import InvalidRequest

from .policy import KeyPolicy, KeyType, KeyVersion, convergent_version_current, hmac_key_bytes

ed25519_seed_bytes = 32
rsa_public_exponent = 65537
# Bytes of randomness beyond the curve order's length, so that reducing modulo the order is unbiased to 2^-64.
ec_scalar_extra_bytes = 8
missing_context = (
    "missing 'context' for key derivation; the key was created using a derived key, which means additional, "
    "per-request information must be included in order to perform operations with the key"
)

CURVES: dict[int, tuple[ec.EllipticCurve, str, int]] = {
    # bits: (curve, Go's curve name, group order n)
    256: (ec.SECP256R1(), "P-256", 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551),
    384: (ec.SECP384R1(), "P-384", int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                                       "581A0DB248B0A77AECEC196ACCC52973", 16)),
    521: (ec.SECP521R1(), "P-521", int("01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F709A5D0"
                                       "3BB5C9B8899C47AEBB6FB71E91386409", 16)),
}

assert all(order.bit_length() == bits for bits, (_, _, order) in CURVES.items())


def new_version(kind: KeyType, key_size: int, now: int, convergent: bool) -> KeyVersion:
    """keysutil's RotateInMemory: fresh material for `kind`, and a fresh HMAC key whatever the type."""
    return KeyVersion(
        created_at=now,
        key=_new_key(kind, key_size),
        hmac_key=os.urandom(hmac_key_bytes),
        convergent_version=convergent_version_current if convergent else 0,
    )


def _new_key(kind: KeyType, key_size: int) -> bytes:
    if kind.family == "aead":
        return os.urandom(kind.size)
    if kind.family == "hmac":
        assert key_size > 0
        return os.urandom(key_size)
    if kind.family == "ed25519":
        return _ed25519_go_key(os.urandom(ed25519_seed_bytes))
    if kind.family == "ecdsa":
        curve, _, order = CURVES[kind.size]
        drawn = int.from_bytes(os.urandom((order.bit_length() + 7) // 8 + ec_scalar_extra_bytes), "big")
        return _pkcs8(ec.derive_private_key(drawn % (order - 1) + 1, curve))
    assert kind.family == "rsa", kind
    return _pkcs8(rsa.generate_private_key(public_exponent=rsa_public_exponent, key_size=kind.size))


def _ed25519_go_key(seed: bytes) -> bytes:
    """Go's ed25519.PrivateKey: the 32-byte seed, then the 32-byte public key."""
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return seed + public


def _pkcs8(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def private_key(kind: KeyType, entry: KeyVersion, validate: bool = False):
    """The version's private key object. Records come from this engine's own view, behind the barrier's
    authenticated encryption, so RSA's costly consistency checks run only when `validate` (a restore) asks."""
    if kind.family == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(entry.key[:ed25519_seed_bytes])
    assert kind.family in ("ecdsa", "rsa"), kind
    return serialization.load_der_private_key(entry.key, None, unsafe_skip_rsa_key_validation=not validate)


def hkdf_sha256(secret: bytes, context: bytes, length: int) -> bytes:
    """keysutil's DeriveKey for KDF "hkdf_sha256": HKDF-SHA256 with no salt and the context as info."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=context).derive(secret)


def symmetric_key(policy: KeyPolicy, entry: KeyVersion, context: bytes, length: int) -> bytes:
    """keysutil's GetKey: the stored key, or one derived from the context when the policy is derived."""
    if not policy.derived:
        return entry.key
    if not context:
        raise InvalidRequest(missing_context)
    return hkdf_sha256(entry.key, context, length)


def derived_ed25519(entry: KeyVersion, context: bytes) -> ed25519.Ed25519PrivateKey:
    """A derived ed25519 key: Go's ed25519.GenerateKey reading its seed from HKDF over the stored key."""
    if not context:
        raise InvalidRequest(f"error deriving key: {missing_context}")
    return ed25519.Ed25519PrivateKey.from_private_bytes(hkdf_sha256(entry.key, context, ed25519_seed_bytes))


def public_key_name(kind: KeyType) -> str:
    """The `name` of a version in an asymmetric key's read: Go's curve name, or the type."""
    return CURVES[kind.size][1] if kind.family == "ecdsa" else kind.name


def public_key_text(policy: KeyPolicy, entry: KeyVersion, context: bytes) -> str:
    """Vault's FormattedPublicKey: PEM (PKIX) for ECDSA and RSA, base64 for ed25519. A derived ed25519 key
    has a public key only for a given context."""
    kind = policy.key_type
    if kind.family == "ed25519":
        if not policy.derived:
            return base64.b64encode(entry.key[ed25519_seed_bytes:]).decode()
        if not context:
            return ""
        return base64.b64encode(derived_ed25519(entry, context).public_key().public_bytes_raw()).decode()
    return _public_pem(private_key(kind, entry))


def _public_pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def export_text(policy: KeyPolicy, entry: KeyVersion, export_type: str) -> str:
    """Vault's getExportKey: one version of the key in the form `export_type` names."""
    kind = policy.key_type
    if export_type == "hmac-key":
        return base64.b64encode(entry.key if kind.family == "hmac" else entry.hmac_key).decode()
    if export_type == "encryption-key" and kind.family == "aead":
        return base64.b64encode(entry.key).decode()
    if export_type in ("encryption-key", "signing-key") and kind.family == "rsa":
        return _pem(private_key(kind, entry), serialization.PrivateFormat.TraditionalOpenSSL)  # "RSA PRIVATE KEY"
    if export_type == "signing-key" and kind.family == "ecdsa":
        return _pem(private_key(kind, entry), serialization.PrivateFormat.TraditionalOpenSSL).strip()  # SEC 1
    if export_type == "signing-key" and kind.family == "ed25519":
        return base64.b64encode(entry.key).decode()
    if export_type == "public-key" and kind.family == "ed25519":
        return base64.b64encode(entry.key[ed25519_seed_bytes:]).decode()
    if export_type == "public-key" and kind.family == "ecdsa":
        return _public_pem(private_key(kind, entry)).strip()
    if export_type == "public-key" and kind.family == "rsa":
        return _public_pem(private_key(kind, entry))
    raise InvalidRequest(f"unknown key type {kind.name} for export type {export_type}")


def _pem(key, private_format: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption()).decode()
