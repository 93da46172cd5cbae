"""The Userpass backend answers as Vault's builtin/credential/userpass does, driven through `Backend.handle` alone.

It proves: user CRUD and LIST (404 when empty) with every field read back as Vault shows it, including the
legacy policies/ttl/max_ttl/bound_cidrs mirrors; lower-cased usernames; the password and policies endpoints;
login's auth spec; that a password is stored only as an scrypt hash (n=2**14, r=8, p=1, 16-byte salt, 32-byte
hash) and never in plain text; that a wrong password and an unknown user get the same error after the same
scrypt work; that CIDR-bound users fail closed when the client's address is unknown; and that every refused
request leaves the storage view byte-for-byte as it was. Each request runs on `asyncio.run` over a
`MemoryView`; scrypt runs for real.
"""

import asyncio
import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from vaultd.engines.auth import userpass
from vaultd.sdk.errors import InvalidRequest, NotFound, PermissionDenied, UnsupportedPath, VaultError
from vaultd.sdk.request import Operation, Request, Response
from vaultd.sdk.storage import MemoryView

READ, UPDATE, DELETE, LIST = Operation.READ, Operation.UPDATE, Operation.DELETE, Operation.LIST
DEFAULT_USER = {
    "token_bound_cidrs": [], "token_explicit_max_ttl": 0, "token_max_ttl": 0, "token_no_default_policy": False,
    "token_num_uses": 0, "token_period": 0, "token_policies": [], "token_ttl": 0, "token_type": "default",
}


@dataclasses.dataclass
class AddressedRequest(Request):
    """A request that says where it came from, as the core knows and the SDK's Request does not yet carry."""

    remote_address: str = ""


class Mount:
    def __init__(self, mount_point="auth/userpass/"):
        self.backend = userpass.userpass_backend()
        self.view = MemoryView()
        self.mount_point = mount_point
        self.address: str | None = None

    def __call__(self, operation, path, data=None) -> Response | None:
        fields = dict(operation=operation, path=path, data=dict(data or {}), storage=self.view,
                      mount_point=self.mount_point, received_at=1_700_000_000.0)
        request = Request(**fields) if self.address is None else AddressedRequest(**fields, remote_address=self.address)
        return asyncio.run(self.backend.handle(request))

    def fails(self, error, operation, path, data=None) -> VaultError:
        with pytest.raises(error) as caught:
            self(operation, path, data)
        return caught.value

    def unchanged(self, error, operation, path, data=None) -> VaultError:
        """The request is refused with `error` and the view is byte-for-byte what it was."""
        before = dict(self.view.values)
        caught = self.fails(error, operation, path, data)
        assert self.view.values == before
        return caught

    def login(self, username, password) -> dict:
        return self(UPDATE, f"login/{username}", {"password": password}).auth


@pytest.fixture
def mount():
    return Mount()


@pytest.fixture
def derivations(monkeypatch):
    """Every scrypt derivation a request makes: (n, r, p, salt length, hash length)."""
    seen, derive = [], userpass._derive

    def counting(password, params, length):
        seen.append((params["n"], params["r"], params["p"], len(bytes.fromhex(params["salt"])), length))
        return derive(password, params, length)

    monkeypatch.setattr(userpass, "_derive", counting)
    return seen


def test_a_new_user_reads_back_its_token_fields_and_never_its_password(mount):
    assert mount(UPDATE, "users/bob", {"password": "hunter2", "token_policies": "dev", "token_ttl": "1h"}) is None
    assert mount(READ, "users/bob").data == {**DEFAULT_USER, "token_policies": ["dev"], "token_ttl": 3600}
    assert mount(READ, "users/alice") is None


def test_legacy_fields_are_mirrored_until_the_new_names_are_sent(mount):
    legacy = {"password": "pw", "policies": "Ops, dev", "ttl": "10m", "max_ttl": "1h", "bound_cidrs": "10.0.0.1/32"}
    mount(UPDATE, "users/bob", legacy)
    assert mount(READ, "users/bob").data == {
        **DEFAULT_USER, "policies": ["dev", "ops"], "token_policies": ["dev", "ops"], "ttl": 600, "token_ttl": 600,
        "max_ttl": 3600, "token_max_ttl": 3600, "bound_cidrs": ["10.0.0.1"], "token_bound_cidrs": ["10.0.0.1"],
    }
    mount(UPDATE, "users/bob", {"token_policies": "admin", "token_ttl": 60, "token_max_ttl": 120,
                                "token_bound_cidrs": []})
    assert mount(READ, "users/bob").data == {
        **DEFAULT_USER, "token_policies": ["admin"], "token_ttl": 60, "token_max_ttl": 120,
    }


def test_usernames_are_lower_cased_on_every_path(mount):
    mount(UPDATE, "users/Bob", {"password": "pw"})
    mount(UPDATE, "users/BOB/policies", {"token_policies": "dev"})
    assert mount(LIST, "users/").data == {"keys": ["bob"]}
    assert mount.login("bOb", "pw")["metadata"] == {"username": "bob"}
    mount(DELETE, "users/BoB")
    mount.fails(NotFound, LIST, "users/")


def test_an_update_without_a_password_keeps_it(mount):
    mount(UPDATE, "users/bob", {"password": "first"})
    mount(UPDATE, "users/bob", {"token_num_uses": 5})
    assert mount.login("bob", "first")["num_uses"] == 5
    mount(UPDATE, "users/bob", {"password": "second"})
    mount.fails(InvalidRequest, UPDATE, "login/bob", {"password": "first"})
    mount.login("bob", "second")


def test_the_password_endpoint_resets_the_password(mount):
    mount(UPDATE, "users/bob", {"password": "old"})
    assert mount(UPDATE, "users/bob/password", {"password": "new"}) is None
    mount.fails(InvalidRequest, UPDATE, "login/bob", {"password": "old"})
    mount.login("bob", "new")


def test_the_policies_endpoint_parses_names_as_vault_does(mount):
    mount(UPDATE, "users/bob", {"password": "pw", "policies": "a"})
    mount(UPDATE, "users/bob/policies", {"token_policies": "Web, db,web"})
    assert mount(READ, "users/bob").data == {**DEFAULT_USER, "token_policies": ["db", "web"]}
    mount(UPDATE, "users/bob/policies", {"policies": ["x", "root"]})
    assert mount(READ, "users/bob").data == {**DEFAULT_USER, "token_policies": ["root"], "policies": ["root"]}


def test_login_returns_the_auth_spec(mount):
    mount(UPDATE, "users/bob", {"password": "pw", "token_policies": "dev,ops", "token_ttl": "1h",
                                "token_max_ttl": "2h", "token_period": 0, "token_no_default_policy": False})
    assert mount.login("bob", "pw") == {
        "policies": ["dev", "ops"], "metadata": {"username": "bob"}, "display_name": "userpass-bob",
        "ttl": 3600, "max_ttl": 7200, "period": 0, "num_uses": 0, "renewable": True, "explicit_max_ttl": 0,
        "no_default_policy": False, "token_type": "default", "bound_cidrs": [],
    }


@pytest.mark.parametrize(("mount_point", "name"), [("auth/corp/people/", "corp-people-bob"), ("", "userpass-bob")])
def test_the_display_name_follows_the_mount_path_as_vaults_core_does(mount_point, name):
    mount = Mount(mount_point)
    mount(UPDATE, "users/bob", {"password": "pw"})
    assert mount.login("bob", "pw")["display_name"] == name


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer_for_the_same_work(mount, derivations):
    mount(UPDATE, "users/bob", {"password": "pw"})
    derivations.clear()
    wrong = mount.unchanged(InvalidRequest, UPDATE, "login/bob", {"password": "nope"})
    unknown = mount.unchanged(InvalidRequest, UPDATE, "login/alice", {"password": "nope"})
    assert wrong.messages == unknown.messages == ["invalid username or password"]
    assert (wrong.data, unknown.data) == (None, None)
    assert derivations == [(2**14, 8, 1, 16, 32)] * 2


def test_a_password_is_stored_only_as_an_scrypt_hash(mount):
    mount(UPDATE, "users/bob", {"password": "correct horse battery staple"})
    mount(UPDATE, "users/alice", {"password": "correct horse battery staple"})
    mount(UPDATE, "users/alice/password", {"password": "another plain secret"})
    stored = {key: json.loads(value) for key, value in mount.view.values.items()}
    assert "correct horse" not in str(mount.view.values) and "another plain" not in str(mount.view.values)
    bob = stored["user/bob"]["password"]
    assert bob.keys() == {"algorithm", "n", "r", "p", "salt", "hash"}
    assert (bob["algorithm"], bob["n"], bob["r"], bob["p"]) == ("scrypt", 2**14, 8, 1)
    assert (len(bytes.fromhex(bob["salt"])), len(bytes.fromhex(bob["hash"]))) == (16, 32)
    kdf = Scrypt(salt=bytes.fromhex(bob["salt"]), length=32, n=2**14, r=8, p=1)
    assert kdf.derive(b"correct horse battery staple") == bytes.fromhex(bob["hash"])
    mount(UPDATE, "users/carol", {"password": "correct horse battery staple"})
    assert json.loads(mount.view.values["user/carol"])["password"]["salt"] != bob["salt"]


def test_a_cidr_bound_user_logs_in_only_from_inside_and_fails_closed_without_an_address(mount):
    mount(UPDATE, "users/bob", {"password": "pw", "token_bound_cidrs": "10.0.0.0/8"})
    mount.unchanged(PermissionDenied, UPDATE, "login/bob", {"password": "pw"})
    mount.address = "192.168.1.1"
    mount.unchanged(PermissionDenied, UPDATE, "login/bob", {"password": "pw"})
    mount.address = "10.9.8.7"
    assert mount.login("bob", "pw")["bound_cidrs"] == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    ("operation", "path", "data", "error", "message"),
    [
        (UPDATE, "users/carol", {"token_policies": "dev"}, InvalidRequest, "missing password"),
        (UPDATE, "users/bob", {"password": ""}, InvalidRequest, "missing password"),
        (UPDATE, "users/bob", {"token_ttl": 90, "token_max_ttl": 60}, InvalidRequest,
         "'token_ttl' cannot be greater than 'token_max_ttl'"),
        (UPDATE, "users/bob", {"max_ttl": -5}, InvalidRequest, "'token_max_ttl' cannot be negative"),
        (UPDATE, "users/bob", {"token_type": "batch", "token_num_uses": 2}, InvalidRequest,
         "'token_type' cannot be 'batch' or 'default_batch' when set to generate tokens with limited use count"),
        (UPDATE, "users/bob", {"bound_cidrs": "nowhere"}, InvalidRequest, 'error parsing address "nowhere"'),
        (UPDATE, "users/bob", {"token_no_default_policy": "maybe"}, InvalidRequest,
         "error converting input 'maybe' for field 'token_no_default_policy'"),
        (UPDATE, "users/bob/password", {}, InvalidRequest, "missing password"),
        (UPDATE, "users/carol/password", {"password": "pw"}, InvalidRequest, "username does not exist"),
        (UPDATE, "users/carol/policies", {"token_policies": "x"}, InvalidRequest, "username does not exist"),
        (UPDATE, "login/bob", {}, InvalidRequest, "missing password"),
        (UPDATE, "login/bob", {"password": "PW"}, InvalidRequest, "invalid username or password"),
        (UPDATE, "login/b*b", {"password": "pw"}, UnsupportedPath, "unsupported path: 'login/b*b'"),
    ],
)
def test_a_refused_request_changes_nothing(mount, operation, path, data, error, message):
    mount(UPDATE, "users/bob", {"password": "pw", "token_policies": "dev"})
    assert mount.unchanged(error, operation, path, data).messages == [message]
