"""Pkcs11Wrapper against a real SoftHSM2 token (the `softhsm` fixture): what it encrypts only the token's key
opens, under the same AAD; the key is generated once, sensitive and never extractable; every HSM fault (missing
library, token or key, refused pin, a pin file others may read, the token store gone) raises HsmError with one
line naming the cause, and the next call on the same wrapper works once the fault is removed.
"""

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
import threading

import msgpack
import pkcs11
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Attribute, KeyType, ObjectClass

from vaultd import devcluster
from vaultd.core.pkcs11_seal import HsmError, Pkcs11Wrapper

from .conftest import lib_path, so_pin, token_label, user_pin

aad = b"core/hsm/barrier-unseal-keys"
threads, calls_per_thread = 4, 10
child_timeout_seconds = 60


@contextlib.contextmanager
def hsm_error(message: str):
    """HsmError whose one-line message contains `message`."""
    with pytest.raises(HsmError) as caught:
        yield caught
    text = str(caught.value)
    assert "\n" not in text and text.startswith("pkcs11: "), text
    assert message in text, text


@pytest.fixture
def wrappers(softhsm):
    """wrappers(**seal_config_overrides) -> a wrapper for the fixture's token; every one is closed at the end."""
    made = []

    def make(environ=None, **overrides):
        made.append(Pkcs11Wrapper(softhsm.seal_config(**overrides), environ=softhsm.env if environ is None else
                                  environ))
        return made[-1]

    yield make
    for wrapper in made:
        wrapper.close()


def token_session():
    """A session of the test's own on the fixture's token (logged in, or sharing a wrapper's login)."""
    token = pkcs11.lib(lib_path).get_token(token_label=token_label)
    try:
        return token.open(rw=True, user_pin=user_pin)
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # a wrapper of this process is logged in: the state is shared
        return token.open(rw=True)


def keys_labelled(label: str) -> list:
    return list(token_session().get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}))


# --- encrypt and decrypt -----------------------------------------------------------------------------------------


def test_a_blob_round_trips_and_describes_itself(wrappers):
    wrapper = wrappers()
    for plaintext in (b"", b"\x00" * 32, os.urandom(1000)):
        blob = wrapper.encrypt(plaintext, aad)
        assert wrapper.decrypt(blob, aad) == plaintext
        fields = msgpack.unpackb(blob)
        assert set(fields) == {"version", "key_label", "mechanism", "iv", "ciphertext"}
        assert (fields["version"], fields["key_label"], fields["mechanism"]) == (1, "vaultd-unseal", "CKM_AES_GCM")
        assert len(fields["iv"]) == 12 and len(fields["ciphertext"]) == len(plaintext) + 16
        assert Pkcs11Wrapper.blob_key_label(blob) == wrapper.key_label == "vaultd-unseal"
    assert wrapper.encrypt(b"same", aad) != wrapper.encrypt(b"same", aad)  # a fresh IV each time


def test_the_aad_is_bound(wrappers):
    wrapper = wrappers()
    blob = wrapper.encrypt(b"root key", aad)
    for other in (b"", b"core/recovery-key", aad + b"x"):
        with hsm_error("pkcs11: decryption failed with key 'vaultd-unseal' (CKR_GENERAL_ERROR)"):
            wrapper.decrypt(blob, other)
    assert wrapper.decrypt(blob, aad) == b"root key"  # the failure dropped the session; the next call reopens


def test_a_tampered_blob_is_refused(wrappers):
    wrapper = wrappers()
    blob = wrapper.encrypt(b"root key", aad)
    fields = msgpack.unpackb(blob)
    for name in ("iv", "ciphertext"):
        for position in (0, len(fields[name]) - 1):
            changed = bytearray(fields[name])
            changed[position] ^= 0x01
            with hsm_error("decryption failed"):
                wrapper.decrypt(msgpack.packb({**fields, name: bytes(changed)}), aad)
    with hsm_error("decryption failed"):
        wrapper.decrypt(msgpack.packb({**fields, "ciphertext": fields["ciphertext"][:-1]}), aad)
    cases = [
        (msgpack.packb({**fields, "key_label": "other"}), "no AES key labelled 'other' (the key this blob was"),
        (msgpack.packb({**fields, "version": 2}), "seal blob version 2 is not supported"),
        (msgpack.packb({**fields, "version": True}), "seal blob version True is not supported"),
        (msgpack.packb({**fields, "mechanism": "CKM_AES_CBC_PAD"}), "mechanism 'CKM_AES_CBC_PAD' is not supported"),
        (msgpack.packb({**fields, "iv": fields["iv"][:11]}), "seal blob iv must be 12 bytes"),
        (msgpack.packb({**fields, "extra": 1}), "not a pkcs11 seal blob (want the keys"),
        (msgpack.packb([1, 2]), "not a pkcs11 seal blob (want the keys"),
        (blob[:-3], "not a pkcs11 seal blob (not msgpack)"),
        (b"", "not a pkcs11 seal blob (not msgpack)"),
    ]
    for bad, message in cases:
        with hsm_error(message):
            wrapper.decrypt(bad, aad)
    assert wrapper.decrypt(blob, aad) == b"root key"
    with hsm_error("not a pkcs11 seal blob"):
        Pkcs11Wrapper.blob_key_label(b"\x00\x01")


def test_the_blob_alone_decrypts_nothing(wrappers):
    """No 32-byte window of the blob is the key: the key never leaves the HSM."""
    root_key = os.urandom(32)
    blob = wrappers().encrypt(root_key, aad)
    fields = msgpack.unpackb(blob)
    assert root_key not in blob
    for start in range(len(blob) - 31):
        with pytest.raises(InvalidTag):
            AESGCM(blob[start:start + 32]).decrypt(fields["iv"], fields["ciphertext"], aad)


def test_concurrent_calls_from_threads(wrappers):
    wrapper = wrappers()
    failures = []

    def work(index: int) -> None:
        try:
            for call in range(calls_per_thread):
                plaintext = f"{index}/{call}".encode()
                assert wrapper.decrypt(wrapper.encrypt(plaintext, aad), aad) == plaintext
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers) and failures == []


# --- the key -----------------------------------------------------------------------------------------------------


def test_the_key_is_generated_once_sensitive_and_not_extractable(wrappers):
    first = wrappers()
    first.check()
    blob = first.encrypt(b"root key", aad)
    second = wrappers()
    second.check()
    assert second.decrypt(blob, aad) == b"root key"
    [key] = keys_labelled("vaultd-unseal")
    assert (key.key_type, key[Attribute.VALUE_LEN]) == (KeyType.AES, 32)
    assert key[Attribute.TOKEN] and key[Attribute.PRIVATE] and key[Attribute.SENSITIVE]
    assert key[Attribute.ALWAYS_SENSITIVE] and key[Attribute.NEVER_EXTRACTABLE] and not key[Attribute.EXTRACTABLE]
    assert key[Attribute.ENCRYPT] and key[Attribute.DECRYPT]
    assert not any(key[attribute] for attribute in (Attribute.WRAP, Attribute.UNWRAP, Attribute.SIGN,
                                                     Attribute.VERIFY, Attribute.DERIVE))
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        key[Attribute.VALUE]


def test_no_key_and_generate_key_false(wrappers):
    wrapper = wrappers(generate_key=False)
    for call in (wrapper.check, lambda: wrapper.encrypt(b"x", aad)):
        with hsm_error("pkcs11: no AES key labelled 'vaultd-unseal' and generate_key is false"):
            call()
    assert keys_labelled("vaultd-unseal") == []
    wrappers().check()  # another node (generate_key = true) makes it
    assert wrapper.decrypt(wrapper.encrypt(b"x", aad), aad) == b"x"


def test_a_blob_of_an_older_key_label_still_decrypts_while_that_key_exists(wrappers):
    old = wrappers(key_label="vaultd-unseal-1")
    old_blob = old.encrypt(b"root key", aad)
    new = wrappers(key_label="vaultd-unseal-2")
    new_blob = new.encrypt(b"root key", aad)
    assert [Pkcs11Wrapper.blob_key_label(blob) for blob in (old_blob, new_blob)] == ["vaultd-unseal-1",
                                                                                      "vaultd-unseal-2"]
    assert new.decrypt(old_blob, aad) == new.decrypt(new_blob, aad) == b"root key"
    assert old.decrypt(new_blob, aad) == b"root key"  # the blob, not the wrapper, names the key


def test_a_deleted_key_faults_and_a_new_key_label_takes_over(wrappers):
    wrappers(key_label="first").check()
    first = wrappers(key_label="first", generate_key=False)
    first_blob = first.encrypt(b"root key", aad)
    [key] = keys_labelled("first")
    key.destroy()
    with hsm_error("pkcs11: encrypting with key 'first' failed (CKR_OBJECT_HANDLE_INVALID: the key was deleted or "
                   "the token removed)"):
        first.encrypt(b"root key", aad)
    with hsm_error("pkcs11: no AES key labelled 'first' and generate_key is false"):
        first.decrypt(first_blob, aad)
    second = wrappers(key_label="second")
    second_blob = second.encrypt(b"root key", aad)
    assert second.decrypt(second_blob, aad) == b"root key"
    with hsm_error("pkcs11: no AES key labelled 'first' (the key this blob was encrypted with)"):
        second.decrypt(first_blob, aad)
    # generate_key = true makes a new key under the old label, which does not open the old blob either
    regenerated = wrappers(key_label="first")
    with hsm_error("pkcs11: no AES key labelled 'first' (decrypting never generates a key)"):
        regenerated.decrypt(first_blob, aad)
    regenerated.check()
    with hsm_error("pkcs11: decryption failed with key 'first'"):
        regenerated.decrypt(first_blob, aad)


other_node = """
import sys, pkcs11
from pkcs11 import KeyType
from vaultd.config import SealConfig
from vaultd.core.pkcs11_seal import Pkcs11Wrapper
session = pkcs11.lib(sys.argv[1]).get_token(token_label="vaultd").open(rw=True, user_pin="1234")
session.generate_key(KeyType.AES, 256, label="vaultd-unseal", id=b"\\x00", store=True)
session.close()
config = SealConfig(type="pkcs11", lib=sys.argv[1], token_label="vaultd", pin_env="VAULTD_HSM_PIN",
                    key_label="vaultd-unseal")
with Pkcs11Wrapper(config) as wrapper:
    print(wrapper.encrypt(b"two", sys.argv[2].encode()).hex())
"""


def test_two_keys_with_one_label_all_decrypt_and_one_encrypts(wrappers, softhsm):
    """Two nodes generating at the same moment leave two keys labelled alike: nothing breaks. The other node
    encrypts with the key of the smaller CKA_ID, and this one's cached key list does not hide it."""
    first = wrappers()
    first_blob = first.encrypt(b"one", aad)
    child = subprocess.run([sys.executable, "-c", other_node, lib_path, aad.decode()],
                           env={**os.environ, **softhsm.env}, capture_output=True, text=True,
                           timeout=child_timeout_seconds)
    assert child.returncode == 0, child.stderr
    assert first.decrypt(bytes.fromhex(child.stdout.strip()), aad) == b"two"
    assert len(keys_labelled("vaultd-unseal")) == 2
    second = wrappers()
    assert second.decrypt(first_blob, aad) == b"one"
    assert first.decrypt(second.encrypt(b"three", aad), aad) == b"three"


# --- the pin -----------------------------------------------------------------------------------------------------


def test_a_wrong_pin_is_refused_and_never_shown(wrappers, softhsm, caplog):
    environ = {**softhsm.env, "VAULTD_HSM_PIN": "987654"}
    wrapper = wrappers(environ=environ)
    for _ in range(2):
        with hsm_error("pkcs11: the pin was refused (CKR_PIN_INCORRECT)") as caught:
            wrapper.check()
        assert "987654" not in str(caught.value)
    environ["VAULTD_HSM_PIN"] = user_pin  # the operator fixes it: the same wrapper logs in
    assert wrapper.decrypt(wrapper.encrypt(b"x", aad), aad) == b"x"
    assert "987654" not in caplog.text and user_pin not in caplog.text


def test_the_pin_environment_variable_must_be_set(wrappers):
    wrapper = wrappers(environ={})
    with hsm_error("pkcs11: the pin environment variable VAULTD_HSM_PIN is not set"):
        wrapper.check()
    with hsm_error("pkcs11: the pin environment variable VAULTD_HSM_PIN is empty"):
        wrappers(environ={"VAULTD_HSM_PIN": ""}).check()


def test_a_pin_file_must_be_private(wrappers, tmp_path):
    pin_file = tmp_path / "hsm.pin"
    pin_file.write_text(user_pin + "\n")
    pin_file.chmod(0o644)
    wrapper = wrappers(environ={}, pin_env="", pin_file=pin_file)
    with hsm_error(f"pkcs11: pin file {pin_file} must be mode 0600 (no group or other access), not 0644"):
        wrapper.check()
    pin_file.chmod(0o600)
    wrapper.check()
    with hsm_error(f"pkcs11: cannot read the pin file {tmp_path / 'none'}: No such file or directory"):
        wrappers(environ={}, pin_env="", pin_file=tmp_path / "none").check()
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600


# --- the library and the token -----------------------------------------------------------------------------------


def test_a_missing_library(wrappers):
    wrapper = wrappers(lib="/nonexistent/libpkcs11.so")
    with hsm_error("pkcs11: cannot load library /nonexistent/libpkcs11.so: ") as caught:
        wrapper.check()
    assert "No such file" in str(caught.value)


def test_a_missing_token_label_and_a_token_made_later(wrappers, softhsm):
    wrapper = wrappers(token_label="later")
    with hsm_error("pkcs11: no token labelled 'later'"):
        wrapper.check()
    devcluster.init_softhsm_token(softhsm.conf, "later", user_pin, so_pin)
    wrapper.check()  # the library was re-initialised, so it sees the new token


def test_the_token_by_slot(wrappers):
    slot_id = token_session().token.slot.slot_id
    assert wrappers(token_label="", slot=slot_id).decrypt(wrappers().encrypt(b"x", aad), aad) == b"x"
    with hsm_error("pkcs11: no token in slot 12345"):
        wrappers(token_label="", slot=12345).check()
    with hsm_error(f"pkcs11: the token in slot {slot_id} is labelled 'vaultd', not 'other'"):
        wrappers(token_label="other", slot=slot_id).check()


def test_the_token_store_gone_and_back(wrappers, softhsm):
    """The HSM goes away under a running wrapper and comes back: the same wrapper works again."""
    wrapper = wrappers()
    blob = wrapper.encrypt(b"root key", aad)
    away = softhsm.token_dir.with_name("away")
    shutil.move(softhsm.token_dir, away)
    try:
        with hsm_error("pkcs11: encrypting with key 'vaultd-unseal' failed (CKR_OBJECT_HANDLE_INVALID"):
            wrapper.encrypt(b"x", aad)
        for _ in range(2):
            with hsm_error(f"pkcs11: cannot initialise library {lib_path} (CKR_GENERAL_ERROR); SoftHSM2 fails so"):
                wrapper.decrypt(blob, aad)
    finally:
        shutil.move(away, softhsm.token_dir)
    assert wrapper.decrypt(blob, aad) == b"root key"


def test_wrappers_share_the_library_and_a_fault_in_one_spares_the_other(wrappers, softhsm):
    healthy = wrappers()
    blob = healthy.encrypt(b"x", aad)
    faulty = wrappers(environ={**softhsm.env, "VAULTD_HSM_PIN": "000000"})
    for _ in range(3):
        with hsm_error("the pin was refused"):
            faulty.check()  # each retry re-initialises the library under the healthy wrapper
        assert healthy.decrypt(blob, aad) == b"x"


def test_a_closed_wrapper_refuses(wrappers):
    wrapper = wrappers()
    wrapper.check()
    wrapper.close()
    wrapper.close()
    with hsm_error("pkcs11: the wrapper is closed"):
        wrapper.encrypt(b"x", aad)


def test_config_errors_are_caught_at_construction(softhsm):
    with hsm_error("pkcs11: mechanism 'CKM_AES_CBC_PAD' is not supported; use CKM_AES_GCM"):
        Pkcs11Wrapper(softhsm.seal_config(mechanism="CKM_AES_CBC_PAD"))
    with hsm_error("pkcs11: key_label must be 1 to 256 bytes"):
        Pkcs11Wrapper(softhsm.seal_config(key_label=""))
    with Pkcs11Wrapper(softhsm.seal_config(), environ=softhsm.env) as wrapper:
        assert re.fullmatch(r"<Pkcs11Wrapper lib='.*' key_label='vaultd-unseal'>", repr(wrapper))
