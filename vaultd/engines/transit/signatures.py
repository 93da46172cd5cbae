"""Signatures and HMACs with one version of a key, as keysutil's SignWithOptions, VerifySignatureWithOptions
and HMACKey produce and check them:

    ed25519     the input itself is signed (derived keys: the key comes from HKDF over the context)
    ecdsa-p*    the hash of the input (or the input, when prehashed); ASN.1 DER, or r||s for "jws"
    rsa-*       the same hash, PSS (salt "auto", "hash" or a length) or PKCS#1 v1.5
    HMAC        every key type has a per-version HMAC key; type hmac MACs with the key itself

A signature is `vault:v<version>:` then its bytes in standard base64, or unpadded URL-safe base64 for "jws".
"""

import base64
import dataclasses

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from vaultd.sdk.errors import InvalidRequest

from . import material
from .inputs import go_base64, split_versioned, too_old, versioned
from .policy import KeyPolicy

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha2-224": hashes.SHA224,
    "sha2-256": hashes.SHA256,
    "sha2-384": hashes.SHA384,
    "sha2-512": hashes.SHA512,
    "sha3-224": hashes.SHA3_224,
    "sha3-256": hashes.SHA3_256,
    "sha3-384": hashes.SHA3_384,
    "sha3-512": hashes.SHA3_512,
}
MARSHALINGS = ("asn1", "jws")
# Go's rsa.PSSSaltLengthAuto and rsa.PSSSaltLengthEqualsHash, the special values of salt_length.
salt_length_auto = 0
salt_length_equals_hash = -1
# ECDSA signs a digest of any length (truncated to the curve order); OpenSSL wants a hash of that length.
_hash_of_length = {cls.digest_size: cls for cls in (hashes.SHA1, hashes.SHA224, hashes.SHA256, hashes.SHA384,
                                                      hashes.SHA512)}


@dataclasses.dataclass(frozen=True)
class SigningOptions:
    hash_algorithm: str = "sha2-256"
    prehashed: bool = False
    signature_algorithm: str = "pss"
    marshaling: str = "asn1"
    salt_length: int = salt_length_auto


def digest(name: str, data: bytes) -> bytes:
    hasher = hashes.Hash(HASHES[name]())
    hasher.update(data)
    return hasher.finalize()


def hmac_sum(name: str, key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, HASHES[name]())
    mac.update(data)
    return mac.finalize()


def hmac_key(policy: KeyPolicy, version: int) -> bytes:
    """keysutil's HMACKey, with its messages."""
    if version < 0:
        raise InvalidRequest("key version does not exist (cannot be negative)")
    if version > policy.latest_version:
        raise InvalidRequest(f"key version does not exist; latest key version is {policy.latest_version}")
    entry = policy.entry(version)
    return entry.key if policy.key_type.family == "hmac" else entry.hmac_key


def signing_version(policy: KeyPolicy, requested: int) -> int:
    if requested == 0:
        return policy.latest_version
    if requested < 0:
        raise InvalidRequest("requested version for signing is negative")
    if requested > policy.latest_version:
        raise InvalidRequest("requested version for signing is higher than the latest key version")
    if policy.min_encryption_version > 0 and requested < policy.min_encryption_version:
        raise InvalidRequest("requested version for signing is less than the minimum encryption key version")
    return requested


def sign(policy: KeyPolicy, requested_version: int, data: bytes, options: SigningOptions,
         context: bytes) -> tuple[str, int, bytes | None]:
    """The signature, the version that made it, and (derived ed25519 only) the public key it verifies with."""
    kind = policy.key_type
    version = signing_version(policy, requested_version)
    entry = policy.entry(version)
    public = None
    if kind.family == "ed25519":
        if options.prehashed:
            raise InvalidRequest("prehashed input is not supported for ed25519 keys")
        key = material.derived_ed25519(entry, context) if policy.derived else material.private_key(kind, entry)
        public = key.public_key().public_bytes_raw() if policy.derived else None
        raw = key.sign(data)
    elif kind.family == "ecdsa":
        raw = _ecdsa_sign(material.private_key(kind, entry), _signed_digest(data, options), options.marshaling,
                          kind.size)
    else:
        key = material.private_key(kind, entry)
        raw = _rsa_sign(key, _signed_digest(data, options), options)
    return versioned(version, _encode(raw, options.marshaling)), version, public


def _signed_digest(data: bytes, options: SigningOptions) -> bytes:
    return data if options.prehashed else digest(options.hash_algorithm, data)


def _ecdsa_sign(key: ec.EllipticCurvePrivateKey, hashed: bytes, marshaling: str, curve_bits: int) -> bytes:
    der = key.sign(hashed, ec.ECDSA(utils.Prehashed(_ecdsa_hash(hashed))))
    if marshaling == "asn1":
        return der
    r, s = utils.decode_dss_signature(der)
    length = (curve_bits + 7) // 8
    return r.to_bytes(length, "big") + s.to_bytes(length, "big")


def _ecdsa_hash(hashed: bytes) -> hashes.HashAlgorithm:
    if len(hashed) not in _hash_of_length:
        raise InvalidRequest(f"prehashed input of {len(hashed)} bytes is not supported; "
                             f"use one of {sorted(_hash_of_length)} bytes")
    return _hash_of_length[len(hashed)]()


def _rsa_sign(key, hashed: bytes, options: SigningOptions) -> bytes:
    algorithm = HASHES[options.hash_algorithm]()
    if len(hashed) != algorithm.digest_size:
        raise InvalidRequest("crypto/rsa: input must be hashed message")
    return key.sign(hashed, _rsa_padding(key, algorithm, options, signing=True), utils.Prehashed(algorithm))


def _rsa_padding(key, algorithm: hashes.HashAlgorithm, options: SigningOptions, signing: bool):
    if options.signature_algorithm == "pkcs1v15":
        return padding.PKCS1v15()
    if options.signature_algorithm != "pss":
        raise InvalidRequest(f"unsupported rsa signature algorithm {options.signature_algorithm}")
    salt = options.salt_length
    salt_max = (key.key_size - 1 + 7) // 8 - 2 - algorithm.digest_size
    if not salt_length_equals_hash <= salt <= salt_max:
        raise InvalidRequest(f"requested salt length {salt} is invalid")
    if salt == salt_length_auto:
        salt = padding.PSS.MAX_LENGTH if signing else padding.PSS.AUTO
    elif salt == salt_length_equals_hash:
        salt = padding.PSS.DIGEST_LENGTH
    return padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt)


def _encode(raw: bytes, marshaling: str) -> str:
    if marshaling == "jws":
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return base64.b64encode(raw).decode()


def verify(policy: KeyPolicy, data: bytes, signature: str, options: SigningOptions, context: bytes) -> bool:
    """Whether `signature` signs `data`; InvalidRequest for a signature this key cannot even check."""
    kind = policy.key_type
    version, payload = split_versioned(signature, "signature")
    if version > policy.latest_version:
        raise InvalidRequest("invalid signature: version is too new")
    if version < policy.min_decryption_version:
        raise InvalidRequest(too_old)
    try:
        raw = go_base64(payload, "rawurl" if options.marshaling == "jws" else "std")
    except ValueError:
        raise InvalidRequest("invalid base64 signature value") from None
    entry = policy.entry(version)
    if kind.family == "ed25519":
        if options.prehashed:
            raise InvalidRequest("prehashed input is not supported for ed25519 keys")
        key = material.derived_ed25519(entry, context) if policy.derived else material.private_key(kind, entry)
        return _checks(key.public_key().verify, raw, data)
    public = material.private_key(kind, entry).public_key()
    hashed = _signed_digest(data, options)
    if kind.family == "ecdsa":
        der = _ecdsa_der(raw, options.marshaling)
        return _checks(public.verify, der, hashed, ec.ECDSA(utils.Prehashed(_ecdsa_hash(hashed))))
    algorithm = HASHES[options.hash_algorithm]()
    scheme = _rsa_padding(public, algorithm, options, signing=False)
    return len(hashed) == algorithm.digest_size and _checks(public.verify, raw, hashed, scheme,
                                                            utils.Prehashed(algorithm))


def _ecdsa_der(raw: bytes, marshaling: str) -> bytes:
    if marshaling == "jws":
        half = len(raw) // 2
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
    try:
        utils.decode_dss_signature(raw)
    except ValueError as error:
        extra = "ExtraData" in str(error)
        raise InvalidRequest("supplied signature contains extra data" if extra else "supplied signature is invalid"
                             ) from None
    return raw


def _checks(check, *arguments) -> bool:
    try:
        check(*arguments)
    except (InvalidSignature, ValueError):
        return False
    return True
