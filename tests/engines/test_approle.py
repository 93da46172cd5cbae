"""The AppRole backend answers as Vault's builtin/credential/approle does, driven through `Backend.handle` alone.

It proves: role CRUD and LIST (404 when empty) with every field read back as Vault shows it, including the
legacy `policies`/`period` mirrors and the one-field property endpoints; role-id read and write; secret-id
generate, custom, LIST, lookup and destroy, by secret-id and by accessor; login's auth spec; that a
secret-id's uses are spent one per login (exactly once, even under concurrent logins), that it expires at
its TTL measured on `received_at`, and that tidy removes it; that neither a secret-id nor a role_id's index
appears in plain text in storage; and that every refused request leaves the storage view byte-for-byte as it
was. Each request runs on `asyncio.run` over a `MemoryView`, stamped with a time the test chooses.
"""

import asyncio
import base64
import dataclasses
import json
import uuid

import pytest

from vaultd.engines.auth.approle import approle_backend
from vaultd.sdk.errors import (
    InternalError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UnsupportedOperation,
    UnsupportedPath,
    VaultError,
)
from vaultd.sdk.request import Operation, Request, Response
from vaultd.sdk.storage import YieldingMemoryView

READ, UPDATE, DELETE, LIST = Operation.READ, Operation.UPDATE, Operation.DELETE, Operation.LIST
T0 = 1_700_000_000.25  # 2023-11-14T22:13:20.25Z, exact in a float
T0_TEXT = "2023-11-14T22:13:20.25Z"
DEFAULT_ROLE = {
    "bind_secret_id": True, "local_secret_ids": False, "secret_id_bound_cidrs": None, "secret_id_num_uses": 0,
    "secret_id_ttl": 0, "token_bound_cidrs": [], "token_explicit_max_ttl": 0, "token_max_ttl": 0,
    "token_no_default_policy": False, "token_num_uses": 0, "token_period": 0, "token_policies": [],
    "token_ttl": 0, "token_type": "default",
}


@dataclasses.dataclass
class AddressedRequest(Request):
    """A request that says where it came from, as the core knows and the SDK's Request does not yet carry."""

    remote_address: str = ""


class Mount:
    """An AppRole mount over its own view; `now` stamps the next request, `address` says where it comes from."""

    def __init__(self):
        self.backend = approle_backend()
        self.view = YieldingMemoryView()
        self.now = T0
        self.address: str | None = None

    def request(self, operation, path, data=None) -> Request:
        fields = dict(operation=operation, path=path, data=dict(data or {}), storage=self.view,
                      mount_point="auth/approle/", received_at=self.now)
        return Request(**fields) if self.address is None else AddressedRequest(**fields, remote_address=self.address)

    def __call__(self, operation, path, data=None) -> Response | None:
        return asyncio.run(self.backend.handle(self.request(operation, path, data)))

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

    def role(self, name="web", **settings) -> str:
        assert self(UPDATE, f"role/{name}", settings) is None
        return self(READ, f"role/{name}/role-id").data["role_id"]

    def secret(self, name="web", **options) -> dict:
        return self(UPDATE, f"role/{name}/secret-id", options).data

    def login(self, role_id, secret_id=None) -> dict:
        return self(UPDATE, "login", {"role_id": role_id, "secret_id": secret_id}).auth


@pytest.fixture
def mount():
    return Mount()


def stored_text(mount) -> str:
    return "\n".join(key + "=" + value.decode() for key, value in mount.view.values.items())


# roles


def test_a_new_role_reads_back_vaults_defaults(mount):
    role_id = mount.role("web")
    assert mount(READ, "role/web").data == DEFAULT_ROLE
    assert str(uuid.UUID(role_id)) == role_id


def test_a_role_update_changes_only_what_it_sends(mount):
    mount.role("web", token_policies="dev,ops", token_ttl="10m", token_max_ttl="1h", secret_id_num_uses=5,
               secret_id_bound_cidrs=["10.0.0.0/8"], token_type="batch", token_bound_cidrs="127.0.0.1/32,10.1.0.0/16")
    mount(UPDATE, "role/web", {"token_max_ttl": 7200, "secret_id_ttl": "30m"})
    assert mount(READ, "role/web").data == {
        **DEFAULT_ROLE, "token_policies": ["dev", "ops"], "token_ttl": 600, "token_max_ttl": 7200,
        "secret_id_num_uses": 5, "secret_id_ttl": 1800, "secret_id_bound_cidrs": ["10.0.0.0/8"],
        "token_type": "batch", "token_bound_cidrs": ["127.0.0.1", "10.1.0.0/16"],
    }


def test_legacy_policies_and_period_are_mirrored_until_the_new_names_are_sent(mount):
    mount.role("web", policies="Dev, ops,dev", period="1h")
    assert mount(READ, "role/web").data == {
        **DEFAULT_ROLE, "policies": ["dev", "ops"], "token_policies": ["dev", "ops"], "period": 3600,
        "token_period": 3600,
    }
    mount(UPDATE, "role/web", {"token_policies": ["admin"], "token_period": 60})
    assert mount(READ, "role/web").data == {**DEFAULT_ROLE, "token_policies": ["admin"], "token_period": 60}


def test_role_names_are_lower_cased_and_listed(mount):
    mount.fails(NotFound, LIST, "role/")
    mount.role("Web")
    mount.role("api")
    assert mount(LIST, "role/").data == {"keys": ["api", "web"]}
    assert mount(READ, "role/WEB").data == DEFAULT_ROLE


def test_deleting_a_role_deletes_its_secret_ids_and_login_index(mount):
    role_id = mount.role("web")
    mount.secret("web")
    mount(DELETE, "role/web")
    assert mount(READ, "role/web") is None
    assert list(mount.view.values) == ["salt"]
    mount.fails(NotFound, LIST, "role/")
    assert mount.fails(InvalidRequest, UPDATE, "login", {"role_id": role_id}).messages == ["invalid role or secret ID"]


def test_a_default_service_token_type_becomes_service_with_a_warning(mount):
    response = mount(UPDATE, "role/web", {"token_type": "default-service"})
    assert response.warnings == ["default-service has no useful meaning; adjusting to service"]
    assert mount(READ, "role/web").data["token_type"] == "service"


def test_role_id_can_be_read_and_replaced(mount):
    old = mount.role("web")
    secret_id = mount.secret("web")["secret_id"]
    assert mount(UPDATE, "role/web/role-id", {"role_id": "my-custom-id"}) is None
    assert mount(READ, "role/web/role-id").data == {"role_id": "my-custom-id"}
    mount.fails(InvalidRequest, UPDATE, "login", {"role_id": old, "secret_id": secret_id})
    assert mount.login("my-custom-id", secret_id)["metadata"] == {"role_name": "web"}
    mount.fails(UnsupportedPath, UPDATE, "role/nope/role-id", {"role_id": "x"})
    assert mount(READ, "role/nope/role-id") is None


def test_one_field_endpoints_read_set_and_reset_a_property(mount):
    mount.role("web", policies="a,b", token_ttl=60)
    assert mount(READ, "role/web/policies").data == {"policies": ["a", "b"], "token_policies": ["a", "b"]}
    assert mount(READ, "role/web/token-ttl").data == {"token_ttl": 60}
    mount(UPDATE, "role/web/token-ttl", {"token_ttl": "2m", "secret_id_ttl": 5})  # another property's field: ignored
    mount(UPDATE, "role/web/secret-id-bound-cidrs", {"secret_id_bound_cidrs": "10.0.0.0/8"})
    mount(UPDATE, "role/web/bind-secret-id", {"bind_secret_id": False})
    assert mount(READ, "role/web/bind-secret-id").data == {"bind_secret_id": False}
    unconstrained = mount.unchanged(InvalidRequest, DELETE, "role/web/secret-id-bound-cidrs")
    assert unconstrained.messages == ["at least one constraint should be enabled on the role"]
    mount(DELETE, "role/web/bind-secret-id")
    mount(DELETE, "role/web/secret-id-bound-cidrs")
    mount(DELETE, "role/web/policies")
    assert mount(READ, "role/web").data == {**DEFAULT_ROLE, "token_ttl": 120, "secret_id_bound_cidrs": []}
    assert mount.unchanged(InvalidRequest, UPDATE, "role/web/token-ttl", {}).messages == ["missing token_ttl"]
    mount.unchanged(UnsupportedOperation, DELETE, "role/web/local-secret-ids")
    mount.unchanged(InvalidRequest, UPDATE, "role/web/local-secret-ids", {"local_secret_ids": True})
    mount.unchanged(UnsupportedPath, UPDATE, "role/nope/token-ttl", {"token_ttl": 1})
    assert mount(READ, "role/nope/token-ttl") is None


# secret-ids


def test_a_generated_secret_id_takes_the_roles_limits(mount):
    mount.role("web", secret_id_num_uses=3, secret_id_ttl="10m")
    issued = mount.secret("web")
    assert issued.keys() == {"secret_id", "secret_id_accessor", "secret_id_ttl", "secret_id_num_uses"}
    assert (issued["secret_id_ttl"], issued["secret_id_num_uses"]) == (600, 3)
    narrower = mount.secret("web", num_uses=2, ttl=60)
    assert (narrower["secret_id_ttl"], narrower["secret_id_num_uses"]) == (60, 2)
    for options, message in [
        ({"num_uses": 4}, "num_uses cannot be higher than the role's secret_id_num_uses"),
        ({"num_uses": 0}, "num_uses cannot be higher than the role's secret_id_num_uses"),
        ({"ttl": "11m"}, "ttl cannot be longer than the role's secret_id_ttl"),
        ({"num_uses": -1}, "num_uses cannot be negative"),
    ]:
        assert mount.unchanged(InvalidRequest, UPDATE, "role/web/secret-id", options).messages == [message]


def test_a_secret_id_ttl_is_capped_at_the_default_max_lease_ttl(mount):
    mount.role("web", secret_id_ttl="800h")
    assert mount.secret("web")["secret_id_ttl"] == 768 * 3600


def test_lookup_by_secret_id_and_by_accessor_show_the_same_entry(mount):
    mount.role("web", secret_id_ttl=600)
    issued = mount.secret("web", metadata=json.dumps({"env": "prod"}), cidr_list="10.0.0.0/8")
    expected = {
        "cidr_list": ["10.0.0.0/8"], "creation_time": T0_TEXT, "expiration_time": "2023-11-14T22:23:20.25Z",
        "last_updated_time": T0_TEXT, "metadata": {"env": "prod"}, "secret_id_accessor": issued["secret_id_accessor"],
        "secret_id_num_uses": 0, "secret_id_ttl": 600, "token_bound_cidrs": [],
    }
    assert mount(UPDATE, "role/web/secret-id/lookup", {"secret_id": issued["secret_id"]}).data == expected
    by_accessor = {"secret_id_accessor": issued["secret_id_accessor"]}
    assert mount(UPDATE, "role/web/secret-id-accessor/lookup", by_accessor).data == expected
    assert mount(UPDATE, "role/web/secret-id/lookup", {"secret_id": "nope"}) is None
    assert mount.fails(InvalidRequest, UPDATE, "role/web/secret-id/lookup", {}).messages == ["missing secret_id"]


def test_a_secret_id_that_never_expires_shows_gos_zero_time(mount):
    mount.role("web")
    secret_id = mount.secret("web")["secret_id"]
    entry = mount(UPDATE, "role/web/secret-id/lookup", {"secret_id": secret_id}).data
    assert entry["expiration_time"] == "0001-01-01T00:00:00Z"


def test_secret_ids_list_by_accessor_and_are_destroyed_either_way(mount):
    mount.role("web")
    mount.fails(NotFound, LIST, "role/web/secret-id/")
    first, second = mount.secret("web"), mount.secret("web")
    assert mount(LIST, "role/web/secret-id/").data == {
        "keys": sorted([first["secret_id_accessor"], second["secret_id_accessor"]]),
    }
    assert mount(UPDATE, "role/web/secret-id/destroy", {"secret_id": first["secret_id"]}) is None
    by_accessor = {"secret_id_accessor": second["secret_id_accessor"]}
    assert mount(DELETE, "role/web/secret-id-accessor/destroy", by_accessor) is None
    mount.fails(NotFound, LIST, "role/web/secret-id/")
    assert [key.split("/")[0] for key in sorted(mount.view.values)] == ["role", "role_id", "salt"]
    assert mount(UPDATE, "role/web/secret-id/destroy", {"secret_id": first["secret_id"]}) is None  # already gone


def test_an_accessor_answers_only_for_its_own_role(mount):
    mount.role("web")
    mount.role("api")
    accessor = {"secret_id_accessor": mount.secret("api")["secret_id_accessor"]}
    assert mount(UPDATE, "role/web/secret-id-accessor/lookup", accessor) is None
    mount.unchanged(PermissionDenied, UPDATE, "role/web/secret-id-accessor/destroy", accessor)
    unknown = mount.unchanged(NotFound, UPDATE, "role/web/secret-id-accessor/lookup", {"secret_id_accessor": "x"})
    assert unknown.messages == ['failed to find accessor entry for secret_id_accessor: "x"']


def test_a_custom_secret_id_logs_in_and_cannot_be_registered_twice(mount):
    role_id = mount.role("web")
    issued = mount(UPDATE, "role/web/custom-secret-id", {"secret_id": "s3cr3t-value"}).data
    assert issued["secret_id"] == "s3cr3t-value"
    assert mount.login(role_id, "s3cr3t-value")["metadata"] == {"role_name": "web"}
    again = mount.unchanged(InvalidRequest, UPDATE, "role/web/custom-secret-id", {"secret_id": "s3cr3t-value"})
    assert again.messages == ["SecretID is already registered"]


@pytest.mark.parametrize(
    "metadata",
    ['{"env": "prod", "team": "a"}', base64.b64encode(b'{"env": "prod", "team": "a"}').decode(), "env=prod, team=a"],
)
def test_secret_id_metadata_is_json_base64_json_or_key_value_pairs(mount, metadata):
    mount.role("web")
    secret_id = mount.secret("web", metadata=metadata)["secret_id"]
    entry = mount(UPDATE, "role/web/secret-id/lookup", {"secret_id": secret_id}).data
    assert entry["metadata"] == {"env": "prod", "team": "a"}


# login


def test_login_returns_the_auth_spec_with_the_secret_ids_metadata(mount):
    role_id = mount.role("web", token_policies="dev", token_ttl="10m", token_max_ttl="1h", token_num_uses=3,
                         token_explicit_max_ttl="2h", token_no_default_policy=True)
    secret_id = mount.secret("web", metadata=json.dumps({"env": "prod", "role_name": "spoofed"}))["secret_id"]
    assert mount.login(f"  {role_id} ", secret_id) == {
        "policies": ["dev"], "metadata": {"env": "prod", "role_name": "web"}, "display_name": "approle",
        "ttl": 600, "max_ttl": 3600, "period": 0, "num_uses": 3, "renewable": True, "explicit_max_ttl": 7200,
        "no_default_policy": True, "token_type": "default", "bound_cidrs": [],
    }


def test_a_secret_id_with_one_use_logs_in_once_and_is_deleted(mount):
    role_id = mount.role("web")
    issued = mount.secret("web", num_uses=1)
    mount.login(role_id, issued["secret_id"])
    mount.unchanged(InvalidRequest, UPDATE, "login", {"role_id": role_id, "secret_id": issued["secret_id"]})
    assert not [key for key in mount.view.values if key.startswith(("secret_id/", "accessor/"))]


def test_each_login_spends_one_use(mount):
    role_id = mount.role("web")
    issued = mount.secret("web", num_uses=3)
    mount.now = T0 + 5
    mount.login(role_id, issued["secret_id"])
    entry = mount(UPDATE, "role/web/secret-id/lookup", {"secret_id": issued["secret_id"]}).data
    assert (entry["secret_id_num_uses"], entry["last_updated_time"]) == (2, "2023-11-14T22:13:25.25Z")


def test_concurrent_logins_cannot_spend_a_single_use_twice(mount):
    role_id = mount.role("web")
    secret_id = mount.secret("web", num_uses=1)["secret_id"]

    async def race():
        requests = [mount.request(UPDATE, "login", {"role_id": role_id, "secret_id": secret_id}) for _ in range(5)]
        return await asyncio.gather(*(mount.backend.handle(r) for r in requests), return_exceptions=True)

    outcomes = asyncio.run(race())
    assert sum(isinstance(outcome, Response) for outcome in outcomes) == 1
    assert sum(isinstance(outcome, InvalidRequest) for outcome in outcomes) == 4


def test_a_secret_id_expires_at_its_ttl_on_the_request_clock(mount):
    role_id = mount.role("web")
    secret_id = mount.secret("web", ttl=60)["secret_id"]
    mount.now = T0 + 59.999
    mount.login(role_id, secret_id)
    mount.now = T0 + 60
    refused = mount.unchanged(InvalidRequest, UPDATE, "login", {"role_id": role_id, "secret_id": secret_id})
    assert refused.messages == ["invalid role or secret ID"]
    assert mount(UPDATE, "role/web/secret-id/lookup", {"secret_id": secret_id}) is None
    mount.fails(NotFound, LIST, "role/web/secret-id/")
    mount(UPDATE, "tidy/secret-id")
    assert not [key for key in mount.view.values if key.startswith(("secret_id/", "accessor/"))]


def test_login_errors_name_what_is_missing_and_nothing_else(mount):
    role_id = mount.role("web")
    mount.role("api")
    other = mount.secret("api")["secret_id"]
    mount.secret("web")
    cases = [
        ({}, "missing role_id"),
        ({"role_id": "  ", "secret_id": "x"}, "missing role_id"),
        ({"role_id": role_id, "secret_id": None}, "missing secret_id"),
        ({"role_id": "not-a-role-id", "secret_id": "x"}, "invalid role or secret ID"),
        ({"role_id": role_id, "secret_id": "wrong"}, "invalid role or secret ID"),
        ({"role_id": role_id, "secret_id": other}, "invalid role or secret ID"),  # another role's secret-id
    ]
    for data, message in cases:
        assert mount.unchanged(InvalidRequest, UPDATE, "login", data).messages == [message]


def test_a_role_without_bind_secret_id_logs_in_with_its_role_id_and_binds_the_token(mount):
    role_id = mount.role("web", bind_secret_id=False, token_bound_cidrs="10.0.0.0/8")
    auth = mount.login(role_id)
    assert (auth["metadata"], auth["bound_cidrs"]) == ({"role_name": "web"}, ["10.0.0.0/8"])


def test_cidr_bound_logins_need_the_clients_address_and_fail_closed_without_it(mount):
    role_id = mount.role("web", secret_id_bound_cidrs="10.0.0.0/8")
    secret_id = mount.secret("web", cidr_list="10.1.0.0/16", token_bound_cidrs="10.1.2.3/32", num_uses=2)["secret_id"]
    login = {"role_id": role_id, "secret_id": secret_id}
    mount.unchanged(InternalError, UPDATE, "login", login)
    mount.address = "10.2.0.1"  # inside the role's block, outside the secret-id's: no use is spent
    assert "on the secret ID" in mount.unchanged(InvalidRequest, UPDATE, "login", login).messages[0]
    mount.address = "192.168.0.1"
    assert "on the role" in mount.unchanged(InvalidRequest, UPDATE, "login", login).messages[0]
    mount.address = "10.1.0.9"
    assert mount.login(role_id, secret_id)["bound_cidrs"] == ["10.1.2.3"]
    mount.unchanged(InvalidRequest, UPDATE, "role/web/secret-id", {"cidr_list": "192.168.0.0/16"})


def test_neither_secret_ids_nor_role_ids_appear_in_storage_keys(mount):
    role_id = mount.role("web")
    generated = mount.secret("web")["secret_id"]
    mount(UPDATE, "role/web/custom-secret-id", {"secret_id": "custom-plaintext-secret"})
    mount.login(role_id, generated)
    text = stored_text(mount)
    assert generated not in text and "custom-plaintext-secret" not in text
    assert role_id not in "\n".join(mount.view.values)


# refused requests


@pytest.mark.parametrize(
    ("path", "data", "message"),
    [
        ("role/web", {"token_ttl": 7200, "token_max_ttl": 3600}, "'token_ttl' cannot be greater than 'token_max_ttl'"),
        ("role/web", {"token_num_uses": -1}, "'token_num_uses' cannot be negative"),
        ("role/web", {"token_type": "weird"}, "invalid 'token_type' value \"weird\""),
        ("role/web", {"token_type": "batch", "token_period": 60},
         "'token_type' cannot be 'batch' or 'default_batch' when set to generate periodic tokens"),
        ("role/web", {"token_bound_cidrs": "10.0.0.300"}, 'error parsing address "10.0.0.300"'),
        ("role/web", {"secret_id_bound_cidrs": "10.0.0.1"}, "invalid CIDR blocks"),
        ("role/web", {"secret_id_num_uses": -2}, "secret_id_num_uses cannot be negative"),
        ("role/web", {"bind_secret_id": False}, "at least one constraint should be enabled on the role"),
        ("role/web", {"local_secret_ids": True}, "local_secret_ids can only be modified during role creation"),
        ("role/web", {"role_id": "api-role-id"}, "role_id already in use"),
        ("role/web", {"token_ttl": "soon"}, "error converting input 'soon' for field 'token_ttl'"),
        ("role/new", {"bind_secret_id": False}, "at least one constraint should be enabled on the role"),
        ("role/web/role-id", {"role_id": ""}, "missing role_id"),
        ("role/web/secret-id", {"metadata": "not key value"}, "failed to parse metadata: invalid <key,value> format"),
        ("role/web/secret-id", {"metadata": '{"env": 1}'}, "failed to parse metadata: invalid <key,value> format"),
        ("role/web/secret-id", {"cidr_list": "nonsense"}, "failed to validate CIDR blocks"),
        ("role/web/custom-secret-id", {"secret_id": ""}, "missing secret_id"),
        ("role/web/custom-secret-id", {"secret_id": "x" * 4097}, "secret_id is longer than maximum of 4096 bytes"),
        ("role/nope/secret-id/lookup", {"secret_id": "x"}, 'role "nope" does not exist'),
        ("role/api/secret-id", {}, "bind_secret_id is not set on the role"),
    ],
)
def test_a_refused_write_changes_nothing(mount, path, data, message):
    mount.role("web", token_max_ttl=3600)
    mount.role("api", role_id="api-role-id", bind_secret_id=False, secret_id_bound_cidrs="10.0.0.0/8")
    mount.secret("web")
    assert mount.unchanged(InvalidRequest, UPDATE, path, data).messages == [message]


def test_issuing_for_a_missing_role_is_a_missing_path(mount):
    assert mount.unchanged(UnsupportedPath, UPDATE, "role/nope/secret-id").messages == ['role "nope" does not exist']
    mount.unchanged(UnsupportedPath, UPDATE, "role/bad name")
