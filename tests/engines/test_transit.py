"""The transit engine answers as Vault's builtin/logical/transit does, driven through `Backend.handle` alone.

It proves: round trips for every key type, one item and batches; that the wire formats are Vault's, by
checking ciphertexts, derived keys, convergent nonces, signatures and HMACs against independent computations
with `cryptography` from exported or published key material; rotation, rewrap and the min_*_version limits;
Vault's messages for tampered, malformed, too-old and wrongly-contexted input; sign/verify for each asymmetric
type; hmac, datakey, hash, random, export, backup/restore; that encrypting to a missing key creates it; that
key material appears in no response unless exported; and that every refused request leaves the storage view
byte-for-byte unchanged (Mount.fails checks it on every failure). Each request runs on `asyncio.run` over a
`MemoryView`, stamped with a time the test chooses. Property tests use hypothesis (replay with its seed).
"""

import asyncio
import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd.engines.transit import transit_backend
from vaultd.engines.transit.inputs import go_atoi, go_base64
from vaultd.engines.transit.material import CURVES
from vaultd.sdk.errors import InvalidRequest, NotFound, VaultError
from vaultd.sdk.request import Operation, Request, Response
from vaultd.sdk.storage import MemoryView, YieldingMemoryView

READ, CREATE, UPDATE, DELETE, LIST = (
    Operation.READ, Operation.CREATE, Operation.UPDATE, Operation.DELETE, Operation.LIST,
)
T0 = 1_521_685_446.5  # 2018-03-22T02:24:06.5Z, exact in a float
T0_TEXT = "2018-03-22T02:24:06.5Z"
AUTH_FAILED = "cipher: message authentication failed"
TOO_OLD = "ciphertext or signature version is disallowed by policy (too old)"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


class Mount:
    """One transit mount over its own view; `now` is the received_at of the next request. Every response
    is kept in `responses`, for the test that no key material leaks."""

    def __init__(self):
        self.backend = transit_backend()
        self.view = YieldingMemoryView()
        self.now = T0
        self.responses: list[Response] = []

    def request(self, operation, path, data=None) -> Request:
        return Request(operation=operation, path=path, data=dict(data or {}), storage=self.view, received_at=self.now)

    def __call__(self, operation, path, data=None) -> Response | None:
        response = asyncio.run(self.backend.handle(self.request(operation, path, data)))
        self.responses.append(response)
        return response

    def write(self, path, data=None) -> dict:
        return self(UPDATE, path, data).data

    def fails(self, error, operation, path, data=None, message=None) -> VaultError:
        """The request raises `error` (with exactly `message`, if given) and changes nothing stored."""
        before = dict(self.view.values)
        with pytest.raises(error) as caught:
            self(operation, path, data)
        assert self.view.values == before
        if message is not None:
            assert caught.value.messages[0] == message
        return caught.value

    def key(self, name, **settings) -> dict:
        return self.write(f"keys/{name}", settings)

    def encrypt(self, name, plaintext: bytes, **extra) -> str:
        return self.write(f"encrypt/{name}", {"plaintext": b64(plaintext), **extra})["ciphertext"]

    def decrypt(self, name, ciphertext: str, **extra) -> bytes:
        return unb64(self.write(f"decrypt/{name}", {"ciphertext": ciphertext, **extra})["plaintext"])

    def export(self, kind, name, version="1") -> str:
        return self(READ, f"export/{kind}/{name}/{version}").data["keys"][version]

    def record(self, name) -> dict:
        return json.loads(self.view.values[f"policy/{name}"])


@pytest.fixture
def transit():
    return Mount()


def rewritten(ciphertext: str, change) -> str:
    """The ciphertext with its decoded body passed through `change`."""
    prefix, body = ciphertext.rsplit(":", 1)
    return f"{prefix}:{b64(change(unb64(body)))}"


def flip_last_byte(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 1])


# ---- Go's decoders, on which Vault's messages depend


@pytest.mark.parametrize(
    ("text", "decoded"),
    [("aGk=", b"hi"), ("", b""), ("aGVsbG8=", b"hello"), ("aGk=\n", b"hi"), ("aG\r\nk=", b"hi"), ("aGVs", b"hel")],
)
def test_go_base64_decodes_what_go_decodes(text, decoded):
    assert go_base64(text) == decoded


@pytest.mark.parametrize(
    ("text", "offset"),
    [("!!!!", 0), ("aGk", 0), ("aGk=x", 4), ("aG=x", 2), ("aG=", 3), ("a===", 1), ("aGVsbG8gd29ybGQ!", 15),
     ("é", 0), ("aGVsbG8", 4)],
)
def test_go_base64_reports_gos_offset(text, offset):
    with pytest.raises(ValueError, match=f"^illegal base64 data at input byte {offset}$"):
        go_base64(text)


def test_go_raw_url_base64_takes_no_padding():
    assert go_base64("_-8", "rawurl") == base64.urlsafe_b64decode("_-8=")
    with pytest.raises(ValueError, match="byte 0"):
        go_base64("a", "rawurl")
    with pytest.raises(ValueError, match="byte 3"):
        go_base64("aGk=", "rawurl")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(min_value=0, max_value=60))
def test_go_base64_decodes_every_encoding_even_with_a_newline_in_it(raw, cut):
    encoded = b64(raw)
    assert go_base64(encoded) == raw
    assert go_base64(encoded[:cut] + "\r\n" + encoded[cut:]) == raw


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ABCDabcd0189+/=\n!é", max_size=24))
def test_what_go_base64_accepts_python_decodes_alike(text):
    """Go is the stricter (Python takes "0000=", Go does not); where Go accepts, the two agree."""
    try:
        decoded = go_base64(text)
    except ValueError:
        return
    assert decoded == base64.b64decode(text.replace("\n", ""), validate=True)


@pytest.mark.parametrize(
    ("text", "value"), [("1", 1), ("+7", 7), ("-3", -3), (" 1", None), ("1_0", None), ("٣", None), ("", None),
                        (str(2**63), None), (str(-(2**63)), -(2**63))],
)
def test_go_atoi_accepts_what_strconv_accepts(text, value):
    assert go_atoi(text) == value


@pytest.mark.parametrize("bits", sorted(CURVES))
def test_the_curve_orders_are_right(bits):
    """(n-1)·G = -G, and n itself is refused as a private scalar: so n is the group order."""
    curve, _, order = CURVES[bits]
    generator = ec.derive_private_key(1, curve).public_key().public_numbers()
    last = ec.derive_private_key(order - 1, curve).public_key().public_numbers()
    assert (last.x, last.y != generator.y) == (generator.x, True)
    with pytest.raises(ValueError):
        ec.derive_private_key(order, curve)


# ---- keys: create, read, list, delete


def test_create_answers_vaults_key_info(transit):
    info = transit.key("k")
    assert info == {
        "allow_plaintext_backup": False, "auto_rotate_period": 0, "deletion_allowed": False, "derived": False,
        "exportable": False, "imported_key": False, "keys": {"1": int(T0)}, "latest_version": 1,
        "min_available_version": 0, "min_decryption_version": 1, "min_encryption_version": 0, "name": "k",
        "supports_decryption": True, "supports_derivation": True, "supports_encryption": True,
        "supports_signing": False, "type": "aes256-gcm96",
    }
    assert transit(READ, "keys/k").data == info
    assert list(transit.view.values) == ["policy/k"]


def test_recreating_a_key_changes_nothing_and_warns(transit):
    info = transit.key("k")
    before = dict(transit.view.values)
    response = transit(UPDATE, "keys/k", {"type": "ed25519", "derived": True})
    assert (response.data, response.warnings) == (info, ["key k already existed"])
    assert transit.view.values == before


@pytest.mark.parametrize(
    ("kind", "name", "flags"),
    [("ed25519", "ed25519", (False, False, True, True)), ("ecdsa-p256", "P-256", (False, False, True, False)),
     ("ecdsa-p384", "P-384", (False, False, True, False)), ("ecdsa-p521", "P-521", (False, False, True, False)),
     ("rsa-2048", "rsa-2048", (True, True, True, False))],
)
def test_asymmetric_keys_publish_their_public_keys(transit, kind, name, flags):
    info = transit.key("k", type=kind)
    version = info["keys"]["1"]
    assert (version["name"], version["creation_time"], version["certificate_chain"]) == (name, T0_TEXT, "")
    assert (info["supports_encryption"], info["supports_decryption"], info["supports_signing"],
            info["supports_derivation"]) == flags
    if kind == "ed25519":
        assert len(unb64(version["public_key"])) == 32
    else:
        assert serialization.load_pem_public_key(version["public_key"].encode())


def test_hmac_keys_report_their_size_and_no_versions(transit):
    info = transit.key("h", type="hmac", key_size=64)
    assert (info["key_size"], info["supports_signing"], "keys" in info) == (64, False, False)
    assert len(unb64(transit.record("h")["versions"]["1"]["key"])) == 64
    assert transit.key("h32", type="hmac")["key_size"] == 32


def test_derived_keys_report_their_kdf(transit):
    info = transit.key("d", derived=True, convergent_encryption=True)
    assert (info["kdf"], info["convergent_encryption"], info["convergent_encryption_version"]) == ("hkdf_sha256",
                                                                                                   True, -1)


def test_list_names_the_keys_and_an_empty_mount_is_not_found(transit):
    transit.fails(NotFound, LIST, "keys/")
    for name in ("b", "a.b@c", "z-1"):
        transit.key(name)
    assert transit(LIST, "keys/").data == {"keys": ["a.b@c", "b", "z-1"]}


def test_reading_a_missing_key_is_not_found(transit):
    transit.fails(NotFound, READ, "keys/nothing")


def test_delete_needs_deletion_allowed(transit):
    transit.key("k")
    transit.fails(InvalidRequest, DELETE, "keys/k", message="error deleting policy k: deletion is not allowed for "
                                                            "this key")
    transit.write("keys/k/config", {"deletion_allowed": True})
    assert transit(DELETE, "keys/k") is None
    assert transit.view.values == {}
    transit.fails(InvalidRequest, DELETE, "keys/k", message="error deleting policy k: could not delete key; not found")


def test_auto_rotate_period_takes_durations_of_an_hour_or_more(transit):
    assert transit.key("k", auto_rotate_period="1h30m")["auto_rotate_period"] == 5400
    assert transit.write("keys/k/config", {"auto_rotate_period": "0"})["auto_rotate_period"] == 0


def test_concurrent_rotations_each_add_a_version(transit):
    transit.key("k")

    async def race():
        requests = [transit.request(UPDATE, "keys/k/rotate") for _ in range(3)]
        return await asyncio.gather(*(transit.backend.handle(request) for request in requests))

    answers = asyncio.run(race())
    assert sorted(answer.data["latest_version"] for answer in answers) == [2, 3, 4]
    assert sorted(transit.record("k")["versions"]) == ["1", "2", "3", "4"]


# ---- encrypt and decrypt


@pytest.mark.parametrize("kind", ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305", "rsa-2048"])
def test_round_trip_for_each_encryption_type(transit, kind):
    transit.key("k", type=kind)
    for plaintext in (b"", b"attack at dawn", bytes(range(190))):  # 190: RSA-2048 OAEP-SHA256's most
        ciphertext = transit.encrypt("k", plaintext)
        assert ciphertext.startswith("vault:v1:")
        assert transit.decrypt("k", ciphertext) == plaintext


@pytest.mark.parametrize(("kind", "aead"), [("aes256-gcm96", AESGCM), ("aes128-gcm96", AESGCM),
                                            ("chacha20-poly1305", ChaCha20Poly1305)])
def test_ciphertext_is_vaults_nonce_ciphertext_tag(transit, kind, aead):
    transit.key("k", type=kind, exportable=True)
    key = unb64(transit.export("encryption-key", "k"))
    body = unb64(transit.encrypt("k", b"hello")[len("vault:v1:"):])
    assert len(body) == 12 + len(b"hello") + 16
    assert aead(key).decrypt(body[:12], body[12:], None) == b"hello"
    nonce = bytes(12)
    made = "vault:v1:" + b64(nonce + aead(key).encrypt(nonce, b"from elsewhere", None))
    assert transit.decrypt("k", made) == b"from elsewhere"


def test_rsa_ciphertext_is_oaep_sha256(transit):
    transit.key("r", type="rsa-2048", exportable=True)
    private = serialization.load_pem_private_key(transit.export("encryption-key", "r").encode(), None)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    body = unb64(transit.encrypt("r", b"secret")[len("vault:v1:"):])
    assert private.decrypt(body, oaep) == b"secret"
    assert transit.decrypt("r", "vault:v1:" + b64(private.public_key().encrypt(b"in", oaep))) == b"in"
    transit.fails(InvalidRequest, UPDATE, "encrypt/r", {"plaintext": b64(bytes(191))},
                  "failed to RSA encrypt the plaintext: crypto/rsa: message too long for RSA key size")
    transit.fails(InvalidRequest, UPDATE, "decrypt/r", {"ciphertext": "vault:v1:" + b64(bytes(256))},
                  "failed to RSA decrypt the ciphertext: crypto/rsa: decryption error")


def test_rsa_4096_encrypts_and_signs(transit):
    info = transit.key("r", type="rsa-4096")
    assert info["keys"]["1"]["name"] == "rsa-4096"
    assert transit.decrypt("r", transit.encrypt("r", b"big")) == b"big"
    signature = transit.write("sign/r", {"input": b64(b"msg")})["signature"]
    assert transit.write("verify/r", {"input": b64(b"msg"), "signature": signature}) == {"valid": True}


def test_each_encryption_is_fresh(transit):
    transit.key("k")
    assert transit.encrypt("k", b"same") != transit.encrypt("k", b"same")


def test_associated_data_is_authenticated(transit):
    transit.key("k")
    ciphertext = transit.encrypt("k", b"p", associated_data=b64(b"ad"))
    assert transit.decrypt("k", ciphertext, associated_data=b64(b"ad")) == b"p"
    transit.fails(InvalidRequest, UPDATE, "decrypt/k", {"ciphertext": ciphertext}, AUTH_FAILED)


def test_tampered_ciphertext_fails_authentication(transit):
    transit.key("k")
    transit.key("c", type="chacha20-poly1305")
    tampered = rewritten(transit.encrypt("k", b"p"), flip_last_byte)
    transit.fails(InvalidRequest, UPDATE, "decrypt/k", {"ciphertext": tampered}, AUTH_FAILED)
    short = rewritten(transit.encrypt("k", b"p"), lambda body: body[:14])
    transit.fails(InvalidRequest, UPDATE, "decrypt/k", {"ciphertext": short}, AUTH_FAILED)
    tampered = rewritten(transit.encrypt("c", b"p"), flip_last_byte)
    transit.fails(InvalidRequest, UPDATE, "decrypt/c", {"ciphertext": tampered},
                  "chacha20poly1305: message authentication failed")


def test_a_ciphertext_of_another_key_fails_authentication(transit):
    transit.key("a")
    transit.key("b")
    transit.fails(InvalidRequest, UPDATE, "decrypt/b", {"ciphertext": transit.encrypt("a", b"p")}, AUTH_FAILED)


@pytest.mark.parametrize(
    ("ciphertext", "message"),
    [("v1:abcd", "invalid ciphertext: no prefix"), ("vault:v1", "invalid ciphertext: wrong number of fields"),
     ("vault:vx:abcd", "invalid ciphertext: version number could not be decoded"),
     ("vault:v2:abcd", "invalid ciphertext: version is too new"),
     ("vault:v1:ab!d", "invalid ciphertext: could not decode base64"),
     ("vault:v1:" + b64(b"short"), "invalid ciphertext length")],
)
def test_malformed_ciphertexts_get_vaults_messages(transit, ciphertext, message):
    transit.key("k")
    transit.fails(InvalidRequest, UPDATE, "decrypt/k", {"ciphertext": ciphertext}, message)


def test_version_zero_means_version_one(transit):
    transit.key("k")
    ciphertext = transit.encrypt("k", b"old")
    assert transit.decrypt("k", ciphertext.replace("vault:v1:", "vault:v0:")) == b"old"


def test_derived_keys_are_hkdf_sha256_of_the_context(transit):
    transit.key("d", derived=True, exportable=True)
    context = b"user-42"
    ciphertext = transit.encrypt("d", b"p", context=b64(context))
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(
        unb64(transit.export("encryption-key", "d")))
    body = unb64(ciphertext[len("vault:v1:"):])
    assert AESGCM(key).decrypt(body[:12], body[12:], None) == b"p"
    assert transit.decrypt("d", ciphertext, context=b64(context)) == b"p"


def test_derived_keys_refuse_a_wrong_or_missing_context(transit):
    transit.key("d", derived=True)
    ciphertext = transit.encrypt("d", b"p", context=b64(b"right"))
    transit.fails(InvalidRequest, UPDATE, "decrypt/d", {"ciphertext": ciphertext, "context": b64(b"wrong")},
                  AUTH_FAILED)
    error = transit.fails(InvalidRequest, UPDATE, "decrypt/d", {"ciphertext": ciphertext})
    assert error.messages[0].startswith("missing 'context' for key derivation")
    transit.fails(InvalidRequest, UPDATE, "encrypt/d", {"plaintext": b64(b"p")})


def test_convergent_encryption_uses_keysutils_version_3_nonce(transit):
    transit.key("c", derived=True, convergent_encryption=True, exportable=True)
    context, plaintext = b"ctx", b"same plaintext"
    first = transit.encrypt("c", plaintext, context=b64(context))
    assert transit.encrypt("c", plaintext, context=b64(context)) == first
    assert transit.encrypt("c", plaintext, context=b64(b"other")) != first
    derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=context).derive(
        unb64(transit.export("encryption-key", "c")))
    mac = crypto_hmac.HMAC(derived[32:], hashes.SHA256())
    mac.update(plaintext)
    nonce = mac.finalize()[:12]
    assert first == "vault:v1:" + b64(nonce + AESGCM(derived[:32]).encrypt(nonce, plaintext, None))
    assert transit.decrypt("c", first, context=b64(context)) == plaintext


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=64), context=st.binary(min_size=1, max_size=16))
def test_derived_round_trip_property(plaintext, context):
    transit = Mount()
    transit.key("d", derived=True)
    assert transit.decrypt("d", transit.encrypt("d", plaintext, context=b64(context)),
                           context=b64(context)) == plaintext


def test_a_nonce_is_refused(transit):
    transit.key("k")
    transit.fails(InvalidRequest, UPDATE, "encrypt/k", {"plaintext": "", "nonce": b64(bytes(12))},
                  "provided nonce not allowed for this key")


def test_signing_keys_do_not_encrypt(transit):
    transit.key("e", type="ed25519")
    transit.fails(InvalidRequest, UPDATE, "encrypt/e", {"plaintext": ""},
                  "message encryption not supported for key type ed25519")
    transit.fails(InvalidRequest, UPDATE, "decrypt/e", {"ciphertext": "vault:v1:AAAA"},
                  "message decryption not supported for key type ed25519")


def test_decrypt_of_a_missing_key(transit):
    transit.fails(InvalidRequest, UPDATE, "decrypt/none", {"ciphertext": "vault:v1:AAAA"}, "encryption key not found")


# ---- encrypting to a missing key creates it


def test_encrypt_creates_a_missing_key(transit):
    assert asyncio.run(transit.backend.existence(transit.request(UPDATE, "encrypt/new", {}))) is False
    response = transit(UPDATE, "encrypt/new", {"plaintext": b64(b"p")})
    assert (response.data["key_version"], response.warnings) == (1, [])
    info = transit(READ, "keys/new").data
    assert (info["type"], info["derived"]) == ("aes256-gcm96", False)
    assert transit.decrypt("new", response.data["ciphertext"]) == b"p"


def test_encrypt_creates_a_derived_key_of_the_asked_type(transit):
    transit.encrypt("d", b"p", context=b64(b"c"), type="chacha20-poly1305", convergent_encryption=True)
    info = transit(READ, "keys/d").data
    assert (info["type"], info["derived"], info["convergent_encryption"]) == ("chacha20-poly1305", True, True)


def test_a_create_that_finds_the_key_warns(transit):
    transit.key("k")
    response = transit(CREATE, "encrypt/k", {"plaintext": b64(b"p")})
    assert response.warnings == ["Attempted creation of the key during the encrypt operation, but it was created "
                                 "beforehand"]


@pytest.mark.parametrize(
    ("body", "message"),
    [({"plaintext": "!!"}, "illegal base64 data at input byte 0"),
     ({"plaintext": "", "type": "ecdsa-p256"}, "key type ecdsa-p256 not supported for this operation"),
     ({"plaintext": "", "type": "des"}, "unknown key type des"),
     ({"plaintext": "", "convergent_encryption": True},
      "convergent encryption requires derivation to be enabled, so context is required"),
     ({"plaintext": "", "key_version": 2}, "requested version for encryption is higher than the latest key version"),
     ({}, "missing plaintext to encrypt")],
)
def test_a_failed_encrypt_creates_no_key(transit, body, message):
    transit.fails(InvalidRequest, UPDATE, "encrypt/new", body, message)
    assert transit.view.values == {}


# ---- batches


def test_batch_round_trip_keeps_order_and_references(transit):
    plaintexts = [b"one", b"", b"three"]
    batch = [{"plaintext": b64(p), "reference": f"r{i}"} for i, p in enumerate(plaintexts)]
    results = transit.write("encrypt/k", {"batch_input": batch})["batch_results"]
    assert [(r["key_version"], r["reference"]) for r in results] == [(1, "r0"), (1, "r1"), (1, "r2")]
    decrypted = transit.write("decrypt/k", {"batch_input": [{"ciphertext": r["ciphertext"]} for r in results]})
    assert decrypted["batch_results"] == [{"plaintext": b64(p), "reference": ""} for p in plaintexts]


def test_a_batch_with_a_failed_item_is_a_400_carrying_every_result(transit):
    transit.key("k")
    batch = [{"plaintext": b64(b"ok")}, {"plaintext": "!!", "reference": "bad"}]
    error = transit.fails(InvalidRequest, UPDATE, "encrypt/k", {"batch_input": batch},
                          "illegal base64 data at input byte 0")
    good, bad = error.data["batch_results"]
    assert transit.decrypt("k", good["ciphertext"]) == b"ok"
    assert bad == {"error": "illegal base64 data at input byte 0", "reference": "bad"}


def test_partial_failure_response_code_200_answers_partial_batches(transit):
    transit.key("k")
    batch = [{"ciphertext": transit.encrypt("k", b"ok")}, {"ciphertext": "vault:v9:AAAA"}]
    data = transit.write("decrypt/k", {"batch_input": batch, "partial_failure_response_code": 200})
    assert data["batch_results"] == [{"plaintext": b64(b"ok"), "reference": ""},
                                     {"plaintext": "", "error": "invalid ciphertext: version is too new",
                                      "reference": ""}]
    transit.fails(InvalidRequest, UPDATE, "decrypt/k", {"batch_input": batch[1:], "partial_failure_response_code": 200})


@pytest.mark.parametrize(
    ("batch", "message"),
    [({"plaintext": ""}, "failed to parse batch input: source data must be an array or slice, got "
                         "map[string]interface {}"),
     ([], "missing batch input to process"),
     (["x"], "failed to parse batch input: [0] expected a map, got 'string'"),
     ([{"context": 5}], "failed to parse batch input: 2 error(s) decoding:\n\n* '[0].context' expected type "
                        "'string', got unconvertible type 'json.Number'\n* '[0].plaintext' missing plaintext to "
                        "encrypt"),
     ([{"plaintext": "", "key_version": "1"}], "failed to parse batch input: 1 error(s) decoding:\n\n* "
                                               "'[0].key_version' expected type 'int', got unconvertible type "
                                               "'string'"),
     ([{"plaintext": "", "context": "YQ=="}, {"plaintext": ""}],
      "context should be set either in all the request blocks or in none")],
)
def test_malformed_batches_are_refused_whole(transit, batch, message):
    transit.key("k")
    transit.fails(InvalidRequest, UPDATE, "encrypt/k", {"batch_input": batch}, message)


def test_rewrap_batch(transit):
    transit.key("k")
    old = [transit.encrypt("k", p) for p in (b"a", b"b")]
    transit.write("keys/k/rotate")
    results = transit.write("rewrap/k", {"batch_input": [{"ciphertext": c} for c in old]})["batch_results"]
    assert [r["ciphertext"][:9] for r in results] == ["vault:v2:", "vault:v2:"]
    assert [transit.decrypt("k", r["ciphertext"]) for r in results] == [b"a", b"b"]


# ---- rotation and the version limits


def test_after_rotation_old_ciphertexts_decrypt_and_rewrap_moves_them(transit):
    transit.key("k")
    old = transit.encrypt("k", b"p")
    info = transit.write("keys/k/rotate")
    assert (info["latest_version"], sorted(info["keys"])) == (2, ["1", "2"])
    assert transit.encrypt("k", b"q").startswith("vault:v2:")
    assert transit.decrypt("k", old) == b"p"
    rewrapped = transit.write("rewrap/k", {"ciphertext": old})
    assert (rewrapped["ciphertext"][:9], rewrapped["key_version"]) == ("vault:v2:", 2)
    assert transit.decrypt("k", rewrapped["ciphertext"]) == b"p"
    assert transit.write("rewrap/k", {"ciphertext": old, "key_version": 1})["ciphertext"].startswith("vault:v1:")


def test_encrypt_with_an_older_version(transit):
    transit.key("k")
    transit.write("keys/k/rotate")
    response = transit.write("encrypt/k", {"plaintext": b64(b"p"), "key_version": 1})
    assert (response["ciphertext"][:9], response["key_version"]) == ("vault:v1:", 1)
    transit.fails(InvalidRequest, UPDATE, "encrypt/k", {"plaintext": "", "key_version": 3},
                  "requested version for encryption is higher than the latest key version")
    transit.fails(InvalidRequest, UPDATE, "encrypt/k", {"plaintext": "", "key_version": -1},
                  "requested version for encryption is negative")


def test_min_decryption_version_refuses_older_ciphertext_until_lowered(transit):
    transit.key("k")
    old = transit.encrypt("k", b"p")
    transit.write("keys/k/rotate")
    info = transit.write("keys/k/config", {"min_decryption_version": 2})
    assert (info["min_decryption_version"], sorted(info["keys"])) == (2, ["2"])
    transit.fails(InvalidRequest, UPDATE, "decrypt/k", {"ciphertext": old}, TOO_OLD)
    transit.fails(InvalidRequest, UPDATE, "rewrap/k", {"ciphertext": old}, TOO_OLD)
    transit.fails(InvalidRequest, UPDATE, "encrypt/k", {"plaintext": "", "key_version": 1}, "no such key version")
    transit.write("keys/k/config", {"min_decryption_version": 1})
    assert transit.decrypt("k", old) == b"p"


def test_min_encryption_version_refuses_older_versions(transit):
    transit.key("k")
    transit.write("keys/k/rotate")
    transit.write("keys/k/config", {"min_encryption_version": 2})
    transit.fails(InvalidRequest, UPDATE, "encrypt/k", {"plaintext": "", "key_version": 1},
                  "requested version for encryption is less than the minimum encryption key version")
    assert transit.encrypt("k", b"p").startswith("vault:v2:")


@pytest.mark.parametrize(
    ("body", "message"),
    [({"min_decryption_version": 3}, "cannot set min decryption version of 3, latest key version is 2"),
     ({"min_decryption_version": -1}, "min decryption version cannot be negative"),
     ({"min_encryption_version": 3}, "cannot set min encryption version of 3, latest key version is 2"),
     ({"min_encryption_version": -1}, "min encryption version cannot be negative"),
     ({"min_decryption_version": 2, "min_encryption_version": 1},
      "cannot set min encryption/decryption values; min encryption version of 1 must be greater than or equal to "
      "min decryption version of 2"),
     ({"auto_rotate_period": "30m"}, "auto rotate period must be 0 to disable or at least an hour"),
     ({"deletion_allowed": True, "min_decryption_version": 9},
      "cannot set min decryption version of 9, latest key version is 2")],
)
def test_bad_config_changes_nothing(transit, body, message):
    transit.key("k")
    transit.write("keys/k/rotate")
    transit.fails(InvalidRequest, UPDATE, "keys/k/config", body, message)


def test_config_settings_turn_on_and_stay_on(transit):
    transit.key("k")
    info = transit.write("keys/k/config", {"exportable": True, "allow_plaintext_backup": True,
                                           "deletion_allowed": True})
    assert (info["exportable"], info["allow_plaintext_backup"], info["deletion_allowed"]) == (True, True, True)
    info = transit.write("keys/k/config", {"exportable": False, "allow_plaintext_backup": False,
                                           "deletion_allowed": False})
    assert (info["exportable"], info["allow_plaintext_backup"], info["deletion_allowed"]) == (True, True, False)
    response = transit(UPDATE, "keys/k/config", {"min_decryption_version": 0})
    assert response.warnings == ["since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1"]
    transit.fails(InvalidRequest, UPDATE, "keys/none/config", {}, "no existing key named none could be found")


# ---- sign and verify


def published_key(transit, name, version="1"):
    text = transit(READ, f"keys/{name}").data["keys"][version]["public_key"]
    if text.startswith("-----"):
        return serialization.load_pem_public_key(text.encode())
    return ed25519.Ed25519PublicKey.from_public_bytes(unb64(text))


def signature_bytes(signature: str) -> bytes:
    payload = signature.split(":", 2)[2]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)) if "-" in payload or "_" in payload \
        else unb64(payload)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048"])
def test_sign_and_verify_for_each_asymmetric_type(transit, kind):
    transit.key("s", type=kind)
    signed = transit.write("sign/s", {"input": b64(b"message")})
    assert (signed["signature"][:9], signed["key_version"]) == ("vault:v1:", 1)
    assert transit.write("verify/s", {"input": b64(b"message"), "signature": signed["signature"]}) == {"valid": True}
    assert transit.write("verify/s", {"input": b64(b"massage"), "signature": signed["signature"]}) == {"valid": False}


def test_signatures_verify_with_the_published_public_keys(transit):
    for kind in ("ed25519", "ecdsa-p256", "rsa-2048"):
        transit.key(kind, type=kind)
    message = b"message"
    signature = signature_bytes(transit.write("sign/ed25519", {"input": b64(message)})["signature"])
    published_key(transit, "ed25519").verify(signature, message)
    signature = signature_bytes(transit.write("sign/ecdsa-p256", {"input": b64(message)})["signature"])
    published_key(transit, "ecdsa-p256").verify(signature, message, ec.ECDSA(hashes.SHA256()))
    signature = signature_bytes(transit.write("sign/rsa-2048/sha2-512", {"input": b64(message)})["signature"])
    published_key(transit, "rsa-2048").verify(
        signature, message, padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=padding.PSS.AUTO),
        hashes.SHA512())
    signature = signature_bytes(transit.write("sign/rsa-2048", {"input": b64(message),
                                                                "signature_algorithm": "pkcs1v15"})["signature"])
    published_key(transit, "rsa-2048").verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_ecdsa_jws_marshaling_is_r_then_s(transit):
    transit.key("e", type="ecdsa-p256")
    signature = transit.write("sign/e", {"input": b64(b"m"), "marshaling_algorithm": "jws"})["signature"]
    payload = signature.split(":", 2)[2]
    assert "=" not in payload and "+" not in payload and "/" not in payload
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert len(raw) == 64
    der = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    published_key(transit, "e").verify(der, b"m", ec.ECDSA(hashes.SHA256()))
    assert transit.write("verify/e", {"input": b64(b"m"), "signature": signature,
                                      "marshaling_algorithm": "jws"}) == {"valid": True}


def test_prehashed_input_is_signed_as_the_digest(transit):
    transit.key("e", type="ecdsa-p256")
    transit.key("r", type="rsa-2048")
    digest = hashlib.sha256(b"m").digest()
    for name in ("e", "r"):
        signature = transit.write(f"sign/{name}", {"input": b64(digest), "prehashed": True})["signature"]
        assert transit.write(f"verify/{name}", {"input": b64(b"m"), "signature": signature}) == {"valid": True}
    transit.fails(InvalidRequest, UPDATE, "sign/r", {"input": b64(b"short"), "prehashed": True},
                  "crypto/rsa: input must be hashed message")


def test_rsa_pss_salt_lengths(transit):
    transit.key("r", type="rsa-2048")
    for salt in ("auto", "hash", "20"):
        signature = transit.write("sign/r", {"input": b64(b"m"), "salt_length": salt})["signature"]
        assert transit.write("verify/r", {"input": b64(b"m"), "signature": signature, "salt_length": salt})["valid"]
    transit.fails(InvalidRequest, UPDATE, "sign/r", {"input": "", "salt_length": "999"},
                  "requested salt length 999 is invalid")
    transit.fails(InvalidRequest, UPDATE, "sign/r", {"input": "", "salt_length": "lots"},
                  "invalid salt_length: salt length neither 'auto', 'hash', nor an int: lots")


def test_derived_ed25519_signs_per_context_and_returns_its_public_key(transit):
    transit.key("d", type="ed25519", derived=True)
    context = b64(b"tenant")
    signed = transit.write("sign/d", {"input": b64(b"m"), "context": context})
    public = transit(READ, "keys/d", {"context": context}).data["keys"]["1"]["public_key"]
    assert signed["public_key"] == public
    assert transit(READ, "keys/d").data["keys"]["1"]["public_key"] == ""
    ed25519.Ed25519PublicKey.from_public_bytes(unb64(public)).verify(signature_bytes(signed["signature"]), b"m")
    assert transit.write("verify/d", {"input": b64(b"m"), "signature": signed["signature"],
                                      "context": context})["valid"]
    assert not transit.write("verify/d", {"input": b64(b"m"), "signature": signed["signature"],
                                          "context": b64(b"other")})["valid"]
    error = transit.fails(InvalidRequest, UPDATE, "sign/d", {"input": b64(b"m")})
    assert error.messages[0].startswith("error deriving key: missing 'context'")


def test_rotated_signing_keys_verify_old_signatures_until_too_old(transit):
    transit.key("e", type="ed25519")
    old = transit.write("sign/e", {"input": b64(b"m")})["signature"]
    transit.write("keys/e/rotate")
    assert transit.write("sign/e", {"input": b64(b"m")})["key_version"] == 2
    assert transit.write("sign/e", {"input": b64(b"m"), "key_version": 1})["signature"][:9] == "vault:v1:"
    assert transit.write("verify/e", {"input": b64(b"m"), "signature": old})["valid"]
    transit.write("keys/e/config", {"min_decryption_version": 2})
    transit.fails(InvalidRequest, UPDATE, "verify/e", {"input": b64(b"m"), "signature": old}, TOO_OLD)


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [("sign/k", {"input": ""}, "key type aes256-gcm96 does not support signing"),
     ("verify/k", {"input": "", "signature": "vault:v1:AA=="}, "key type aes256-gcm96 does not support verification"),
     ("sign/e", {"input": "", "hash_algorithm": "md5"}, 'invalid hash algorithm "md5"'),
     ("sign/e/sha2-999", {"input": ""}, 'invalid hash algorithm "sha2-999"'),
     ("sign/e", {"input": "", "marshaling_algorithm": "der"}, 'invalid marshaling type "der"'),
     ("sign/e", {"input": "!"}, "unable to decode input as base64: illegal base64 data at input byte 0"),
     ("sign/e", {"input": "", "key_version": 2}, "requested version for signing is higher than the latest key version"),
     ("sign/none", {"input": ""}, "encryption key not found"),
     ("verify/e", {"input": ""}, "neither a 'signature' nor an 'hmac' were given to verify"),
     ("verify/e", {"input": "", "signature": "sig"}, "invalid signature: no prefix"),
     ("verify/e", {"input": "", "signature": "vault:v9:AA=="}, "invalid signature: version is too new"),
     ("verify/e", {"input": "", "signature": "vault:v1:!"}, "invalid base64 signature value"),
     ("verify/e", {"input": "", "signature": "vault:v1:AA=="}, "supplied signature is invalid"),
     ("verify/e", {"batch_input": [{"input": "", "signature": "x"}, {"input": "", "hmac": "y"}]},
      "elements of batch_input must all provide 'signature' or all provide 'hmac'"),
     ("verify/e", {"batch_input": [{"input": "", "signature": "x"}, {"input": ""}]},
      "some elements of batch_input are missing 'signature'")],
)
def test_bad_sign_and_verify_requests(transit, path, body, message):
    transit.key("k")
    transit.key("e", type="ecdsa-p256")
    transit.fails(InvalidRequest, UPDATE, path, body, message)


def test_sign_and_verify_batches_answer_200_with_per_item_errors(transit):
    transit.key("e", type="ed25519")
    signed = transit.write("sign/e", {"batch_input": [{"input": b64(b"a"), "reference": "x"}, {"input": "!"}]})
    good, bad = signed["batch_results"]
    assert (good["key_version"], good["reference"]) == (1, "x")
    assert bad == {"error": "unable to decode input as base64: illegal base64 data at input byte 0", "reference": ""}
    checked = transit.write("verify/e", {"batch_input": [{"input": b64(b"a"), "signature": good["signature"]},
                                                         {"input": b64(b"b"), "signature": good["signature"]},
                                                         {"input": b64(b"a"), "signature": "nope"}]})
    assert checked["batch_results"] == [{"valid": True, "reference": ""}, {"valid": False, "reference": ""},
                                        {"valid": False, "error": "invalid signature: no prefix", "reference": ""}]


# ---- hmac


def test_hmac_is_hmac_sha256_under_the_versions_hmac_key(transit):
    transit.key("k", exportable=True)
    tag = transit.write("hmac/k", {"input": b64(b"data")})["hmac"]
    key = unb64(transit.export("hmac-key", "k"))
    assert tag == "vault:v1:" + b64(hmac.new(key, b"data", hashlib.sha256).digest())
    assert transit.write("verify/k", {"input": b64(b"data"), "hmac": tag}) == {"valid": True}
    assert transit.write("verify/k", {"input": b64(b"date"), "hmac": tag}) == {"valid": False}


def test_hmac_algorithm_from_the_url_or_the_body(transit):
    transit.key("k", exportable=True)
    key = unb64(transit.export("hmac-key", "k"))
    expected = "vault:v1:" + b64(hmac.new(key, b"d", hashlib.sha512).digest())
    assert transit.write("hmac/k/sha2-512", {"input": b64(b"d")})["hmac"] == expected
    assert transit.write("hmac/k", {"input": b64(b"d"), "algorithm": "sha2-512"})["hmac"] == expected
    assert transit.write("verify/k/sha2-512", {"input": b64(b"d"), "hmac": expected})["valid"]
    assert not transit.write("verify/k", {"input": b64(b"d"), "hmac": expected})["valid"]


def test_hmac_type_keys_mac_with_the_key_itself(transit):
    transit.key("h", type="hmac", key_size=48, exportable=True)
    key = unb64(transit.export("hmac-key", "h"))
    assert len(key) == 48
    tag = transit.write("hmac/h", {"input": b64(b"d")})["hmac"]
    assert tag == "vault:v1:" + b64(hmac.new(key, b"d", hashlib.sha256).digest())


def test_hmac_versions_and_batches(transit):
    transit.key("k")
    old = transit.write("hmac/k", {"input": b64(b"d")})["hmac"]
    transit.write("keys/k/rotate")
    new = transit.write("hmac/k", {"input": b64(b"d")})["hmac"]
    assert (old[:9], new[:9]) == ("vault:v1:", "vault:v2:")
    batch = transit.write("verify/k", {"batch_input": [{"input": b64(b"d"), "hmac": old, "reference": "o"},
                                                       {"input": b64(b"d"), "hmac": new}]})
    assert batch["batch_results"] == [{"valid": True, "reference": "o"}, {"valid": True, "reference": ""}]
    made = transit.write("hmac/k", {"batch_input": [{"input": b64(b"d")}, {"input": "!"}]})["batch_results"]
    assert made == [{"hmac": new, "valid": False, "reference": ""},
                    {"valid": False, "error": "unable to decode input as base64: illegal base64 data at input "
                                              "byte 0", "reference": ""}]
    transit.write("keys/k/config", {"min_decryption_version": 2})
    transit.fails(InvalidRequest, UPDATE, "verify/k", {"input": b64(b"d"), "hmac": old},
                  "cannot verify HMAC: version is too old (disallowed by policy)")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [("hmac/k", {}, "missing input for HMAC"),
     ("hmac/k", {"input": "!"}, "unable to decode input as base64: illegal base64 data at input byte 0"),
     ("hmac/k", {"input": "", "key_version": 5}, "key version does not exist; latest key version is 1"),
     ("hmac/k/md5", {"input": ""}, 'unsupported algorithm "md5"'),
     ("hmac/none", {"input": ""}, "encryption key not found"),
     ("verify/k", {"input": "", "hmac": "abc"}, "invalid HMAC to verify: no prefix"),
     ("verify/k", {"input": "", "hmac": "vault:v1"}, "invalid HMAC: wrong number of fields"),
     ("verify/k", {"input": "", "hmac": "vault:v2:AA=="}, "invalid HMAC: version is too new")],
)
def test_bad_hmac_requests(transit, path, body, message):
    transit.key("k")
    transit.fails(InvalidRequest, UPDATE, path, body, message)


# ---- datakey, hash, random


def test_datakey_plaintext_and_wrapped(transit):
    transit.key("k")
    made = transit.write("datakey/plaintext/k")
    key = unb64(made["plaintext"])
    assert (len(key), made["key_version"]) == (32, 1)
    assert transit.decrypt("k", made["ciphertext"]) == key
    wrapped = transit.write("datakey/wrapped/k", {"bits": 512})
    assert "plaintext" not in wrapped
    assert len(transit.decrypt("k", wrapped["ciphertext"])) == 64
    assert len(unb64(transit.write("datakey/plaintext/k", {"bits": 128})["plaintext"])) == 16


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [("datakey/plaintext/k", {"bits": 100}, "invalid bits length"),
     ("datakey/raw/k", {}, "Invalid path, must be 'plaintext' or 'wrapped'"),
     ("datakey/wrapped/none", {}, "encryption key not found"),
     ("datakey/wrapped/k", {"context": "!"}, "failed to base64-decode context")],
)
def test_bad_datakey_requests(transit, path, body, message):
    transit.key("k")
    transit.fails(InvalidRequest, UPDATE, path, body, message)


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [("hash", {"input": b64(b"abc")}, hashlib.sha256(b"abc").hexdigest()),
     ("hash/sha2-512", {"input": b64(b"abc")}, hashlib.sha512(b"abc").hexdigest()),
     ("hash", {"input": b64(b"abc"), "algorithm": "sha3-256", "format": "base64"},
      b64(hashlib.sha3_256(b"abc").digest())),
     ("hash/sha2-224", {"input": ""}, hashlib.sha224(b"").hexdigest())],
)
def test_hash(transit, path, body, expected):
    assert transit.write(path, body) == {"sum": expected}
    assert transit.view.values == {}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [("hash", {}, "input missing"),
     ("hash", {"input": "", "format": "raw"}, 'unsupported encoding format raw; must be "hex" or "base64"'),
     ("hash/md5", {"input": ""}, "unsupported algorithm md5"),
     ("random", {"bytes": 0}, '"bytes" cannot be less than 1'),
     ("random/131073", {}, '"bytes" should be less than 131072'),
     ("random", {"format": "raw"}, 'unsupported encoding format "raw"; must be "hex" or "base64"'),
     ("random/lots", {}, 'error parsing url-set byte count: strconv.Atoi: parsing "lots": invalid syntax'),
     ("random/moon/8", {}, 'unsupported entropy source "moon"; must be "platform" or "seal", or "all"')],
)
def test_bad_hash_and_random_requests(transit, path, body, message):
    transit.fails(InvalidRequest, UPDATE, path, body, message)


@pytest.mark.parametrize(
    ("path", "body", "length"),
    [("random", {}, 32), ("random/16", {"format": "hex"}, 16), ("random/platform/8", {}, 8),
     ("random/all", {"bytes": 4}, 4)],
)
def test_random(transit, path, body, length):
    text = transit.write(path, body)["random_bytes"]
    raw = bytes.fromhex(text) if body.get("format") == "hex" else unb64(text)
    assert len(raw) == length
    assert transit.write(path, body)["random_bytes"] != text


# ---- export, backup and restore


def test_private_material_exports_only_from_exportable_keys(transit):
    transit.key("k")
    transit.key("e", type="ed25519")
    transit.fails(InvalidRequest, READ, "export/encryption-key/k", message="private key material is not exportable")
    transit.fails(InvalidRequest, READ, "export/hmac-key/k", message="private key material is not exportable")
    transit.fails(InvalidRequest, READ, "export/signing-key/e", message="private key material is not exportable")
    public = transit(READ, "export/public-key/e").data
    assert public == {"keys": {"1": transit(READ, "keys/e").data["keys"]["1"]["public_key"]}, "name": "e",
                      "type": "ed25519"}


def test_export_versions(transit):
    transit.key("k", exportable=True)
    transit.write("keys/k/rotate")
    everything = transit(READ, "export/encryption-key/k").data["keys"]
    assert sorted(everything) == ["1", "2"] and all(len(unb64(key)) == 32 for key in everything.values())
    assert transit(READ, "export/encryption-key/k/latest").data["keys"] == {"2": everything["2"]}
    assert transit(READ, "export/encryption-key/k/v1").data["keys"] == {"1": everything["1"]}
    transit.write("keys/k/config", {"min_decryption_version": 2})
    assert sorted(transit(READ, "export/encryption-key/k").data["keys"]) == ["2"]
    transit.fails(InvalidRequest, READ, "export/encryption-key/k/1",
                  message="version for export is below minimum decryption version")
    transit.fails(InvalidRequest, READ, "export/encryption-key/k/x", message="invalid key version")
    transit.fails(InvalidRequest, READ, "export/encryption-key/k/9",
                  message="version does not exist or cannot be found")


def test_exported_signing_keys_are_the_keys_that_sign(transit):
    for kind in ("ecdsa-p256", "ed25519", "rsa-2048"):
        transit.key(kind, type=kind, exportable=True)
    ecdsa = transit.export("signing-key", "ecdsa-p256")
    assert ecdsa.startswith("-----BEGIN EC PRIVATE KEY-----") and not ecdsa.endswith("\n")
    private = serialization.load_pem_private_key(ecdsa.encode(), None)
    assert private.public_key() == published_key(transit, "ecdsa-p256")
    raw = unb64(transit.export("signing-key", "ed25519"))
    assert len(raw) == 64
    signer = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
    assert signer.public_key() == published_key(transit, "ed25519")
    rsa_pem = transit.export("signing-key", "rsa-2048")
    assert rsa_pem.startswith("-----BEGIN RSA PRIVATE KEY-----") and rsa_pem.endswith("\n")
    assert rsa_pem == transit.export("encryption-key", "rsa-2048")


@pytest.mark.parametrize(
    ("path", "message"),
    [("export/signing-key/k", "signing not supported for the key"),
     ("export/encryption-key/e", "encryption not supported for the key"),
     ("export/public-key/k", "unknown key type aes256-gcm96 for export type public-key"),
     ("export/secret-key/k", "invalid export type: secret-key")],
)
def test_bad_exports(transit, path, message):
    transit.key("k", exportable=True)
    transit.key("e", type="ed25519", exportable=True)
    transit.fails(InvalidRequest, READ, path, message=message)


def test_exporting_a_missing_key_is_not_found(transit):
    transit.fails(NotFound, READ, "export/encryption-key/none")


def test_backup_and_restore(transit):
    transit.key("k", exportable=True, allow_plaintext_backup=True)
    ciphertext = transit.encrypt("k", b"kept")
    blob = transit(READ, "backup/k").data["backup"]
    assert transit(READ, "keys/k").data["backup_info"] == {"time": T0_TEXT, "version": 1}
    assert transit(UPDATE, "restore/copy", {"backup": blob}) is None
    assert transit.decrypt("copy", ciphertext) == b"kept"
    assert transit(READ, "keys/copy").data["restore_info"] == {"time": T0_TEXT, "version": 1}
    transit.fails(InvalidRequest, UPDATE, "restore", {"backup": blob}, 'key "k" already exists')
    transit.write("keys/k/rotate")
    transit(UPDATE, "restore", {"backup": blob, "force": True})
    assert transit(READ, "keys/k").data["latest_version"] == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [({}, "exporting is disallowed on the policy"),
     ({"exportable": True}, "plaintext backup is disallowed on the policy")],
)
def test_backup_needs_exportable_and_plaintext_backup(transit, settings, message):
    transit.key("k", **settings)
    transit.fails(InvalidRequest, READ, "backup/k", message=message)


def test_restore_refuses_bad_blobs(transit):
    transit.key("k", type="ed25519", exportable=True, allow_plaintext_backup=True)
    record = json.loads(base64.b64decode(transit(READ, "backup/k").data["backup"]))
    record["policy"]["versions"]["1"]["key"] = b64(bytes(64))  # a seed whose public half does not match
    for blob in ("!!", b64(b"{}"), b64(json.dumps(record).encode())):
        transit.fails(InvalidRequest, UPDATE, "restore/other", {"backup": blob},
                      "backup data does not contain a valid policy")
    transit.fails(InvalidRequest, UPDATE, "restore/other", {}, "'backup' must be supplied")


# ---- what is stored, and what is never answered


def test_storage_holds_one_record_per_key(transit):
    transit.key("k")
    transit.write("keys/k/rotate")
    transit.key("e", type="ecdsa-p256")
    assert sorted(transit.view.values) == ["policy/e", "policy/k"]
    record = transit.record("k")
    assert (record["latest_version"], sorted(record["versions"])) == (2, ["1", "2"])
    assert record["versions"]["2"]["created_at"] == int(T0 * 1_000_000_000)


def test_no_response_carries_key_material_unless_exported(transit):
    for kind in ("aes256-gcm96", "chacha20-poly1305", "ed25519", "ecdsa-p256", "rsa-2048", "hmac"):
        transit.key(kind, type=kind)
    transit.key("derived", derived=True, convergent_encryption=True)
    for name in ("aes256-gcm96", "chacha20-poly1305", "rsa-2048"):
        transit.decrypt(name, transit.encrypt(name, b"p"))
        transit.write(f"datakey/wrapped/{name}")
    transit.decrypt("derived", transit.encrypt("derived", b"p", context=b64(b"c")), context=b64(b"c"))
    for name in ("ed25519", "ecdsa-p256", "rsa-2048"):
        transit.write(f"sign/{name}", {"input": b64(b"m")})
    for name in ("aes256-gcm96", "hmac", "ed25519"):
        transit.write(f"hmac/{name}", {"input": b64(b"m")})
    for name in ("aes256-gcm96", "chacha20-poly1305", "ed25519", "ecdsa-p256", "rsa-2048", "hmac", "derived"):
        transit(READ, f"keys/{name}")
        transit.write(f"keys/{name}/rotate")
    answered = json.dumps([response.data for response in transit.responses if response])
    secrets = [secret for raw in transit.view.values.values() for secret in secrets_of(json.loads(raw))]
    assert len(secrets) == 2 * 14
    for secret in secrets:
        assert b64(secret)[:-4] not in answered and secret.hex() not in answered


def secrets_of(record: dict):
    """Each version's HMAC key and its private material: the AEAD or HMAC key, the ed25519 seed, the ECDSA
    scalar, or RSA's first prime."""
    for version in record["versions"].values():
        key = unb64(version["key"])
        yield unb64(version["hmac_key"])
        if record["type"].startswith(("ecdsa", "rsa")):
            numbers = serialization.load_der_private_key(key, None).private_numbers()
            value = numbers.private_value if record["type"].startswith("ecdsa") else numbers.p
            yield value.to_bytes((value.bit_length() + 7) // 8, "big")
        else:
            yield key[:32] if record["type"] == "ed25519" else key


@pytest.mark.parametrize(
    ("operation", "path", "body", "message"),
    [(UPDATE, "keys/x", {"type": "aes512"}, "unknown key type aes512"),
     (UPDATE, "keys/x", {"convergent_encryption": True}, "convergent encryption requires derivation to be enabled"),
     (UPDATE, "keys/x", {"type": "ecdsa-p256", "derived": True},
      "key derivation and convergent encryption not supported for keys of type ecdsa-p256"),
     (UPDATE, "keys/x", {"type": "ed25519", "derived": True, "convergent_encryption": True},
      "convergent encryption not supported for keys of type ed25519"),
     (UPDATE, "keys/x", {"key_size": 64}, "key_size is not valid for algorithm aes256-gcm96"),
     (UPDATE, "keys/x", {"type": "hmac", "key_size": 16}, "invalid key_size 16"),
     (UPDATE, "keys/x", {"auto_rotate_period": 60}, "auto rotate period must be 0 to disable or at least an hour"),
     (UPDATE, "keys/x", {"derived": "maybe"}, "error converting input 'maybe' for field 'derived'"),
     (UPDATE, "keys/k/rotate", {}, None), (UPDATE, "keys/none/rotate", {}, "key not found"),
     (READ, "keys/k", {"context": "!"}, "failed to base64-decode context"),
     (UPDATE, "encrypt/k", {"plaintext": "aGk"}, "illegal base64 data at input byte 0"),
     (UPDATE, "encrypt/k", {"plaintext": "", "context": "YQ"}, "illegal base64 data at input byte 0"),
     (UPDATE, "decrypt/k", {}, "missing ciphertext to decrypt"),
     (UPDATE, "decrypt/k", {"batch_input": [{"context": ""}]},
      "failed to parse batch input: 1 error(s) decoding:\n\n* '[0].ciphertext' missing ciphertext to decrypt"),
     (UPDATE, "rewrap/k", {"ciphertext": "vault:v1:" + b64(bytes(28)), "key_version": 7}, AUTH_FAILED),
     (UPDATE, "rewrap/k", {"ciphertext": "vault:v1:AAAA"}, "invalid ciphertext length")],
)
def test_bad_input_raises_and_leaves_storage_unchanged(transit, operation, path, body, message):
    transit.key("k")
    if message is None:  # a control: this one succeeds and does change storage
        before = dict(transit.view.values)
        transit(operation, path, body)
        assert transit.view.values != before
        return
    transit.fails(InvalidRequest, operation, path, body, message)


def test_auto_rotate_period_rotates_at_the_first_encryption_after_it_passes():
    from vaultd.engines.transit import transit_backend
    from vaultd.sdk.request import Operation, Request

    backend, view = transit_backend(), MemoryView()

    def call(path, data, at):
        return asyncio.run(backend.handle(Request(Operation.UPDATE, path, data, view, received_at=at)))

    start = 1_700_000_000.0
    call("keys/rotating", {"auto_rotate_period": "1h"}, start)
    plaintext = base64.b64encode(b"x").decode()
    assert call("encrypt/rotating", {"plaintext": plaintext}, start + 3599).data["ciphertext"].startswith("vault:v1:")
    assert call("encrypt/rotating", {"plaintext": plaintext}, start + 3600).data["ciphertext"].startswith("vault:v2:")
    assert call("encrypt/rotating", {"plaintext": plaintext}, start + 3700).data["ciphertext"].startswith("vault:v2:")
