"""The token store and the auth/token/ mount behave as Vault's token_store.go: token and accessor formats,
salted-only storage, the create rules (policies subset, orphans, TTL, explicit max TTL, period, num_uses,
renewable, display name, meta), the lookup shapes, the renewal rules, num_uses exhaustion, tree and orphan
revocation, and the expiration manager with its bounded passes.

How: each test builds a TokenStore over a MemoryView with a FakeClock, drives it directly or through the
mount's Backend with sdk Requests (the calling token in the `x-vault-token` header, as the core passes it),
and moves time only by advancing the clock. Async code runs under `asyncio.run`.
"""

import asyncio
import functools
import hashlib
import hmac
import re

import pytest

from vaultd.clock import FakeClock
from vaultd.core import tokens
from vaultd.core.token_paths import rfc3339, token_backend
from vaultd.core.tokens import REVOCATION_PENDING, TokenStore, calculate_ttl, human_duration
from vaultd.sdk.errors import InvalidRequest, PermissionDenied
from vaultd.sdk.request import Operation, Request
from vaultd.sdk.storage import MemoryView, YieldingMemoryView

SALT = b"0123456789abcdef0123456789abcdef"
HOUR = 3600
MAX_TTL = 768 * HOUR
AUTH_KEYS = [
    "client_token", "accessor", "policies", "token_policies", "metadata", "lease_duration", "renewable",
    "entity_id", "token_type", "orphan", "mfa_requirement", "num_uses",
]  # fmt: skip
LOOKUP_KEYS = {
    "accessor", "creation_time", "creation_ttl", "display_name", "entity_id", "expire_time", "explicit_max_ttl",
    "id", "issue_time", "meta", "num_uses", "orphan", "path", "policies", "renewable", "ttl", "type",
}  # fmt: skip


def asynchronous(test):
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


class Vault:
    """A token store, its mount, a fake clock, and a root token."""

    def __init__(self, view=None, policy_exists=None):
        self.view = view or MemoryView()
        self.clock = FakeClock()
        self.store = TokenStore(self.view, self.clock, SALT)
        self.backend = token_backend(self.store, policy_exists)
        self.root = ""

    async def start(self) -> "Vault":
        self.root, _ = await self.store.create_root_token()
        return self

    async def call(self, token, path, data=None, operation=Operation.UPDATE):
        headers = {"x-vault-token": token} if token else {}
        request = Request(operation=operation, path=path, data=dict(data or {}), storage=MemoryView(), headers=headers)
        return await self.backend.handle(request)

    async def create(self, parent, path="create", **data) -> dict:
        return (await self.call(parent, path, data)).auth

    async def lookup(self, token, caller=None) -> dict:
        return (await self.call(caller or self.root, "lookup", {"token": token})).data

    def salted(self, value: str) -> str:
        return hmac.new(SALT, value.encode(), hashlib.sha256).hexdigest()

    def keys_for(self, token: str) -> list[str]:
        salted = self.salted(token)
        return [key for key in self.view.values if salted in key]


async def vault(**kwargs) -> Vault:
    return await Vault(**kwargs).start()


# --- formats and storage ------------------------------------------------------------------------------------


@asynchronous
async def test_tokens_are_hvs_and_24_base62_with_a_24_base62_accessor():
    v = await vault()
    children = [await v.create(v.root, policies=["web"]) for _ in range(3)]
    for token in [v.root] + [child["client_token"] for child in children]:
        assert re.fullmatch(r"hvs\.[A-Za-z0-9]{24}", token)
    accessors = [child["accessor"] for child in children]
    assert all(re.fullmatch(r"[A-Za-z0-9]{24}", accessor) for accessor in accessors)
    assert len({child["client_token"] for child in children}) == 3 and len(set(accessors)) == 3


@asynchronous
async def test_storage_holds_only_salted_ids_never_a_token():
    v = await vault()
    child = await v.create(v.root, policies=["web"], meta={"team": "a"}, ttl="1h")
    grandchild = await v.create(child["client_token"], policies=["web"])
    issued = [v.root, child["client_token"], grandchild["client_token"]]
    for token in issued:
        for key, value in v.view.values.items():
            assert token not in key and token not in value.decode()
            assert token[len("hvs.") :] not in key and token[len("hvs.") :] not in value.decode()
    salted_child, salted_grandchild = v.salted(child["client_token"]), v.salted(grandchild["client_token"])
    assert f"id/{salted_child}" in v.view.values
    assert v.view.values[f"accessor/{v.salted(child['accessor'])}"] == salted_child.encode()
    assert f"parent/{salted_child}/{salted_grandchild}" in v.view.values
    stored = tokens.TokenEntry.decode(v.view.values[f"id/{salted_grandchild}"])
    assert stored.parent == salted_child and stored.accessor == grandchild["accessor"]
    other_salt = TokenStore(v.view, v.clock, b"another salt, 32 bytes long....!")
    assert await other_salt.lookup(child["client_token"]) is None  # the keys depend on the salt


# --- create -------------------------------------------------------------------------------------------------


@asynchronous
async def test_create_from_root_answers_vaults_auth_block():
    v = await vault()
    auth = await v.create(v.root, policies=["web", "DB", "web"])
    assert list(auth) == AUTH_KEYS
    assert auth == {
        "client_token": auth["client_token"], "accessor": auth["accessor"], "policies": ["db", "default", "web"],
        "token_policies": ["db", "default", "web"], "metadata": None, "lease_duration": MAX_TTL,
        "renewable": True, "entity_id": "", "token_type": "service", "orphan": False, "mfa_requirement": None,
        "num_uses": 0,
    }  # fmt: skip
    data = await v.lookup(auth["client_token"])
    assert data["path"] == "auth/token/create" and data["display_name"] == "token" and data["orphan"] is False


@asynchronous
async def test_root_token_from_init_has_no_lease():
    v = await vault()
    data = (await v.call(v.root, "lookup-self", operation=Operation.READ)).data
    assert set(data) == LOOKUP_KEYS - {"renewable", "issue_time"}
    assert data["id"] == v.root and data["policies"] == ["root"] and data["path"] == "auth/token/root"
    assert data["display_name"] == "root" and data["orphan"] is True
    assert data["expire_time"] is None and data["ttl"] == 0 and data["creation_ttl"] == 0
    with pytest.raises(InvalidRequest, match="invalid lease ID"):
        await v.call(v.root, "renew-self")
    entry = await v.store.lookup(v.root)
    assert v.store.auth_block(v.root, entry)["lease_duration"] == 0


@asynchronous
async def test_no_policies_inherits_the_parents_and_root_children_never_expire():
    v = await vault()
    root_child = await v.create(v.root)
    assert root_child["policies"] == ["root"] and root_child["lease_duration"] == 0
    assert root_child["renewable"] is False
    parent = await v.create(v.root, policies=["web"], no_default_policy=True)
    child = await v.create(parent["client_token"])
    assert child["policies"] == ["web"]  # default only when the parent has it


@asynchronous
async def test_child_policies_must_be_subset_of_a_non_root_parent():
    v = await vault()
    parent = (await v.create(v.root, policies=["web", "db"]))["client_token"]
    with pytest.raises(InvalidRequest, match="child policies must be subset of parent"):
        await v.create(parent, policies=["web", "admin"])
    assert (await v.create(parent, policies=["web"]))["policies"] == ["default", "web"]
    assert (await v.create(parent, policies=["web"], no_default_policy=True))["policies"] == ["web"]
    with pytest.raises(InvalidRequest, match="child policies must be subset of parent"):
        await v.create(parent, policies=["root"])
    without_default = (await v.create(v.root, policies=["web"], no_default_policy=True))["client_token"]
    assert (await v.create(without_default, policies=["web"]))["policies"] == ["web"]  # default only if held


@asynchronous
async def test_orphans_come_from_create_orphan_or_from_root_with_no_parent():
    v = await vault()
    parent = (await v.create(v.root, policies=["web"]))["client_token"]
    with pytest.raises(InvalidRequest, match="root or sudo privileges required to create orphan token"):
        await v.create(parent, no_parent=True)
    via_path = await v.create(parent, path="create-orphan", policies=["web"])
    via_flag = await v.create(v.root, policies=["web"], no_parent=True)
    child = await v.create(parent, policies=["web"])
    assert via_path["orphan"] is True and via_flag["orphan"] is True and child["orphan"] is False
    assert (await v.lookup(via_path["client_token"]))["path"] == "auth/token/create-orphan"
    await v.call(v.root, "revoke", {"token": parent})
    assert await v.store.lookup(via_path["client_token"]) is not None
    assert await v.store.lookup(child["client_token"]) is None


@asynchronous
async def test_create_options_show_in_auth_and_lookup():
    v = await vault()
    body = {
        "policies": "web", "ttl": "1h", "explicit_max_ttl": "2h", "num_uses": 3, "renewable": False,
        "display_name": "ci bot!", "meta": {"team": "a", "build": 7},
    }  # fmt: skip
    auth = await v.create(v.root, **body)
    assert auth["lease_duration"] == HOUR and auth["renewable"] is False and auth["num_uses"] == 3
    assert auth["metadata"] == {"team": "a", "build": "7"}
    data = await v.lookup(auth["client_token"])
    assert set(data) == LOOKUP_KEYS
    now = v.clock.now()
    assert data["display_name"] == "token-ci-bot" and data["explicit_max_ttl"] == 2 * HOUR
    assert data["creation_ttl"] == HOUR and data["ttl"] == HOUR and data["num_uses"] == 3
    assert data["expire_time"] == rfc3339(now + HOUR) and data["issue_time"] == rfc3339(now)
    assert data["creation_time"] == int(now) and data["renewable"] is False
    assert data["meta"] == {"team": "a", "build": "7"} and data["id"] == auth["client_token"]


@asynchronous
async def test_ttl_is_capped_at_the_max_with_vaults_warning():
    v = await vault()
    response = await v.call(v.root, "create", {"policies": ["web"], "ttl": "1000h"})
    assert response.auth["lease_duration"] == MAX_TTL
    assert response.warnings == [
        'TTL of "1000h" exceeded the effective max_ttl of "768h"; TTL value is capped accordingly'
    ]
    capped = await v.create(v.root, policies=["web"], explicit_max_ttl="30m")
    assert capped["lease_duration"] == 30 * 60  # the default TTL, lowered by the explicit max


@asynchronous
async def test_bad_create_input_is_refused_with_vaults_messages():
    v = await vault()
    cases = [
        ({"num_uses": -1}, "number of uses cannot be negative"),
        ({"ttl": -5}, "ttl must be positive"),
        ({"period": -1}, "period must be positive"),
        ({"type": "batch"}, "batch tokens are not supported"),
        ({"meta": {"nested": {"a": 1}}}, "meta values must be strings"),
        ({"id": "hvs.mine"}, "custom token ID cannot have the 'hvs.' prefix"),
    ]
    for body, message in cases:
        with pytest.raises(InvalidRequest, match=re.escape(message)):
            await v.create(v.root, **body)
    limited = (await v.create(v.root, policies=["web"], num_uses=5))["client_token"]
    with pytest.raises(InvalidRequest, match="restricted use token cannot generate child tokens"):
        await v.create(limited)
    web = (await v.create(v.root, policies=["web"]))["client_token"]
    with pytest.raises(InvalidRequest, match="root or sudo privileges required to create periodic token"):
        await v.create(web, period="1h")
    with pytest.raises(InvalidRequest, match="root or sudo privileges required to specify token id"):
        await v.create(web, id="mine")


@asynchronous
async def test_custom_ids_and_policy_warnings():
    async def exists(name):
        return name in ("default", "root")

    v = await vault(policy_exists=exists)
    response = await v.call(v.root, "create", {"id": "my-token", "policies": ["web"]})
    assert response.auth["client_token"] == "my-token"
    assert response.warnings == ['Policy "web" does not exist']
    assert (await v.store.lookup("my-token")).policies == ["default", "web"]
    with pytest.raises(InvalidRequest, match="duplicate ID"):
        await v.create(v.root, id="my-token")


@asynchronous
async def test_expiring_root_tokens_cannot_create_non_expiring_root_tokens():
    v = await vault()
    expiring = (await v.create(v.root, ttl="1h"))["client_token"]
    with pytest.raises(InvalidRequest, match="expiring root tokens cannot create non-expiring root tokens"):
        await v.create(expiring)
    bounded = await v.create(v.root, explicit_max_ttl="2h")
    assert bounded["policies"] == ["root"] and bounded["lease_duration"] == 2 * HOUR


# --- lookup -------------------------------------------------------------------------------------------------


@asynchronous
async def test_lookup_variants():
    v = await vault()
    token = (await v.create(v.root, policies=["web"]))["client_token"]
    by_post = await v.lookup(token)
    by_get = (await v.call(v.root, "lookup", {"token": token}, Operation.READ)).data
    own = (await v.call(token, "lookup", {}, Operation.READ)).data
    self_get = (await v.call(token, "lookup-self", operation=Operation.READ)).data
    self_post = (await v.call(token, "lookup-self")).data
    assert by_post == by_get == own == self_get == self_post and by_post["id"] == token
    with pytest.raises(PermissionDenied) as bad:
        await v.lookup("hvs.nosuchtoken000000000000")
    assert bad.value.messages == ["bad token"]
    with pytest.raises(PermissionDenied) as no_caller:
        await v.call("", "lookup-self")
    assert no_caller.value.messages == ["permission denied"]


@asynchronous
async def test_lookup_accessor_has_an_empty_id():
    v = await vault()
    auth = await v.create(v.root, policies=["web"])
    data = (await v.call(v.root, "lookup-accessor", {"accessor": auth["accessor"]})).data
    assert data["id"] == "" and data == {**await v.lookup(auth["client_token"]), "id": ""}
    with pytest.raises(InvalidRequest, match="invalid accessor"):
        await v.call(v.root, "lookup-accessor", {"accessor": "A" * 24})
    with pytest.raises(InvalidRequest, match="missing accessor"):
        await v.call(v.root, "lookup-accessor", {})


@asynchronous
async def test_an_accessor_index_pointing_at_another_token_is_not_trusted():
    v = await vault()
    first = await v.create(v.root, policies=["web"])
    second = await v.create(v.root, policies=["db"])
    v.view.values[f"accessor/{v.salted(first['accessor'])}"] = v.salted(second["client_token"]).encode()
    assert await v.store.lookup_accessor(first["accessor"]) is None
    assert (await v.store.lookup_accessor(second["accessor"])).policies == ["db", "default"]


@asynchronous
async def test_a_token_dies_when_its_ttl_passes_on_the_clock():
    v = await vault()
    token = (await v.create(v.root, policies=["web"], ttl="60s"))["client_token"]
    v.clock.advance(59)
    assert (await v.lookup(token))["ttl"] == 1
    v.clock.advance(1)
    assert await v.store.lookup(token) is None
    with pytest.raises(PermissionDenied, match="bad token"):
        await v.lookup(token)
    with pytest.raises(PermissionDenied):
        await v.call(token, "lookup-self")
    with pytest.raises(InvalidRequest, match="token not found"):
        await v.call(v.root, "renew", {"token": token})


# --- renew --------------------------------------------------------------------------------------------------


@asynchronous
async def test_renew_without_increment_grants_the_last_ttl_again():
    v = await vault()
    token = (await v.create(v.root, policies=["web"], ttl="1h"))["client_token"]
    v.clock.advance(30 * 60)
    response = await v.call(v.root, "renew", {"token": token})
    assert response.auth["client_token"] == token and response.auth["lease_duration"] == HOUR
    assert response.warnings == []
    data = await v.lookup(token)
    assert data["ttl"] == HOUR and data["last_renewal_time"] == int(v.clock.now())
    assert data["creation_ttl"] == HOUR  # creation_ttl never changes
    v.clock.advance(59 * 60)
    assert await v.store.lookup(token) is not None  # alive past its first expiry
    increment = await v.call(token, "renew-self", {"increment": "10m"})
    assert increment.auth["lease_duration"] == 10 * 60


@asynchronous
async def test_renewal_is_capped_by_explicit_max_ttl_with_a_warning():
    v = await vault()
    token = (await v.create(v.root, policies=["web"], ttl="1h", explicit_max_ttl="90m"))["client_token"]
    v.clock.advance(50 * 60)
    response = await v.call(token, "renew-self", {"increment": "1h"})
    assert response.auth["lease_duration"] == 40 * 60
    assert response.warnings == ['TTL of "1h" exceeded the effective max_ttl of "40m"; TTL value is capped accordingly']
    v.clock.advance(40 * 60)
    assert await v.store.lookup(token) is None


@asynchronous
async def test_periodic_tokens_renew_to_their_period_each_time():
    v = await vault()
    auth = await v.create(v.root, policies=["web"], period="1h", ttl="5h")
    token = auth["client_token"]
    assert auth["lease_duration"] == HOUR
    for _ in range(30):  # 30 hours, far past any ttl: a periodic token lives as long as it is renewed
        v.clock.advance(50 * 60)
        response = await v.call(token, "renew-self", {"increment": "10h"})
        assert response.auth["lease_duration"] == HOUR and response.warnings == []
    data = await v.lookup(token)
    assert data["period"] == HOUR and data["ttl"] == HOUR
    v.clock.advance(HOUR)
    assert await v.store.lookup(token) is None


@asynchronous
async def test_non_renewable_tokens_refuse_renewal():
    v = await vault()
    fixed = (await v.create(v.root, policies=["web"], renewable=False))["client_token"]
    with pytest.raises(InvalidRequest, match=tokens.NOT_RENEWABLE):
        await v.call(v.root, "renew", {"token": fixed})
    forever = (await v.create(v.root))["client_token"]  # a root token without a TTL is never renewable
    with pytest.raises(InvalidRequest, match=tokens.NOT_RENEWABLE):
        await v.call(forever, "renew-self")
    with pytest.raises(InvalidRequest, match="missing token ID"):
        await v.call(v.root, "renew", {})


@asynchronous
async def test_renew_accessor_answers_without_the_token():
    v = await vault()
    auth = await v.create(v.root, policies=["web"], ttl="1h")
    response = await v.call(v.root, "renew-accessor", {"accessor": auth["accessor"], "increment": "2h"})
    assert response.auth["client_token"] == "" and response.auth["lease_duration"] == 2 * HOUR
    assert (await v.lookup(auth["client_token"]))["ttl"] == 2 * HOUR
    with pytest.raises(InvalidRequest, match="invalid accessor"):
        await v.call(v.root, "renew-accessor", {"accessor": "B" * 24})


def test_calculate_ttl_and_human_durations_match_vault():
    now = 1_000_000.0
    assert calculate_ttl(now, 0, 0, 0, 0, now) == (tokens.ttl_default_seconds, [])
    assert calculate_ttl(now, 60, HOUR, 0, 0, now) == (60, [])
    assert calculate_ttl(now, 0, HOUR, 0, 0, now) == (HOUR, [])
    assert calculate_ttl(now + 10, 0, HOUR, 0, 0, now - MAX_TTL + 100) == (90, [
        'TTL of "1h" exceeded the effective max_ttl of "1m30s"; TTL value is capped accordingly'
    ])  # fmt: skip
    assert calculate_ttl(now, 99 * HOUR, 0, 2 * HOUR, 0, now) == (2 * HOUR, [])
    assert calculate_ttl(now, 0, 0, 1000 * HOUR, 0, now)[0] == MAX_TTL
    with pytest.raises(InvalidRequest, match="past the max TTL"):
        calculate_ttl(now, 0, HOUR, 0, 60, now - 60)
    cases = {0: "0s", 45: "45s", 60: "1m", 90: "1m30s", HOUR: "1h", 5400: "1h30m", 3630: "1h30s", MAX_TTL: "768h"}
    assert {seconds: human_duration(seconds) for seconds in cases} == cases


# --- num_uses -----------------------------------------------------------------------------------------------


@asynchronous
async def test_num_uses_runs_out_and_the_token_is_revoked():
    v = await vault()
    token = (await v.create(v.root, policies=["web"], num_uses=2))["client_token"]
    assert (await v.store.use(token)).num_uses == 1
    assert (await v.lookup(token))["num_uses"] == 1
    assert (await v.store.use(token)).num_uses == REVOCATION_PENDING
    assert await v.store.lookup(token) is None
    assert await v.store.use(token) is None
    data = (await v.call(token, "lookup-self")).data  # the request that spent the last use is still served
    assert data["num_uses"] == 0 and data["id"] == token
    assert await v.store.revoke_expired() == 1
    assert v.keys_for(token) == []


@asynchronous
async def test_unlimited_tokens_are_not_changed_by_use():
    v = await vault()
    token = (await v.create(v.root, policies=["web"]))["client_token"]
    before = dict(v.view.values)
    for _ in range(5):
        assert (await v.store.use(token)).num_uses == 0
    assert v.view.values == before


@asynchronous
async def test_concurrent_uses_never_exceed_num_uses():
    v = await vault(view=YieldingMemoryView())
    token = (await v.create(v.root, policies=["web"], num_uses=3))["client_token"]
    results = await asyncio.gather(*(v.store.use(token) for _ in range(10)))
    assert sum(result is not None for result in results) == 3


# --- revocation ---------------------------------------------------------------------------------------------


async def _family(v: Vault, **data) -> tuple[str, str, str]:
    """parent → child → grandchild, all under root."""
    parent = (await v.create(v.root, policies=["web"], **data))["client_token"]
    child = (await v.create(parent, policies=["web"]))["client_token"]
    grandchild = (await v.create(child, policies=["web"]))["client_token"]
    return parent, child, grandchild


@asynchronous
async def test_revoke_takes_the_whole_tree_and_leaves_no_keys():
    v = await vault()
    parent, child, grandchild = await _family(v)
    sibling = (await v.create(v.root, policies=["web"]))["client_token"]
    accessors = [(await v.store.lookup(token)).accessor for token in (parent, child, grandchild)]
    assert await v.call(v.root, "revoke", {"token": parent}) is None  # 204
    for token in (parent, child, grandchild):
        assert await v.store.lookup(token) is None and v.keys_for(token) == []
    for accessor in accessors:
        assert await v.store.lookup_accessor(accessor) is None
    assert not any(key.startswith("accessor/" + v.salted(a)) for a in accessors for key in v.view.values)
    assert await v.store.lookup(sibling) is not None and await v.store.lookup(v.root) is not None
    assert await v.call(v.root, "revoke", {"token": parent}) is None  # revoking again is not an error


@asynchronous
async def test_revoke_self_takes_the_callers_tree():
    v = await vault()
    parent, child, _ = await _family(v)
    await v.call(parent, "revoke-self")
    assert await v.store.lookup(parent) is None and await v.store.lookup(child) is None


@asynchronous
async def test_revoke_orphan_leaves_the_children_as_orphans():
    v = await vault()
    parent, child, grandchild = await _family(v, ttl="1h")
    await v.call(v.root, "revoke-orphan", {"token": parent})
    assert await v.store.lookup(parent) is None and v.keys_for(parent) == []
    child_data = await v.lookup(child)
    assert child_data["orphan"] is True and child_data["ttl"] == MAX_TTL
    assert (await v.lookup(grandchild))["orphan"] is False  # still the child's child
    await v.call(v.root, "revoke", {"token": child})
    assert await v.store.lookup(grandchild) is None
    with pytest.raises(InvalidRequest, match="token to revoke not found"):
        await v.call(v.root, "revoke-orphan", {"token": parent})


@asynchronous
async def test_revoke_accessor_takes_the_tree():
    v = await vault()
    parent, child, _ = await _family(v)
    accessor = (await v.store.lookup(parent)).accessor
    assert await v.call(v.root, "revoke-accessor", {"accessor": accessor}) is None
    assert await v.store.lookup(parent) is None and await v.store.lookup(child) is None
    with pytest.raises(InvalidRequest, match="invalid accessor"):
        await v.call(v.root, "revoke-accessor", {"accessor": accessor})


# --- the expiration manager ---------------------------------------------------------------------------------


@asynchronous
async def test_expiration_manager_revokes_expired_tokens_with_their_children():
    v = await vault()
    parent = (await v.create(v.root, policies=["web"], ttl="1h"))["client_token"]
    child = (await v.create(parent, policies=["web"], ttl="10h"))["client_token"]
    orphan = (await v.create(v.root, policies=["web"], ttl="10h", no_parent=True))["client_token"]
    assert await v.store.revoke_expired() == 0
    v.clock.advance(HOUR)
    assert await v.store.lookup(child) is None  # dead with its parent before the manager runs
    assert await v.store.revoke_expired() == 2
    assert v.keys_for(parent) == [] and v.keys_for(child) == []
    assert await v.store.lookup(orphan) is not None and len(v.keys_for(orphan)) == 2  # id/ and expire/
    assert await v.store.revoke_expired() == 0


@asynchronous
async def test_expiration_manager_skips_renewed_tokens():
    v = await vault()
    token = (await v.create(v.root, policies=["web"], ttl="1m"))["client_token"]
    v.clock.advance(30)
    await v.call(token, "renew-self", {"increment": "1h"})
    v.clock.advance(HOUR - 60)
    assert await v.store.revoke_expired() == 0
    assert await v.store.lookup(token) is not None
    assert [key for key in v.keys_for(token) if key.startswith("expire/")] == [
        tokens._expire_key(v.salted(token), (await v.store.lookup(token)).expire_time)
    ]


@asynchronous
async def test_expiration_manager_does_bounded_work_per_pass(monkeypatch):
    monkeypatch.setattr(tokens, "expired_revocations_per_pass_max", 3)
    v = await vault()
    singles = [(await v.create(v.root, policies=["web"], ttl="1m"))["client_token"] for _ in range(4)]
    parent = (await v.create(v.root, policies=["web"], ttl="2m"))["client_token"]
    children = [(await v.create(parent, policies=["web"]))["client_token"] for _ in range(4)]
    v.clock.advance(3 * 60)
    assert [await v.store.revoke_expired() for _ in range(5)] == [3, 3, 3, 0, 0]
    for token in singles + [parent] + children:
        assert v.keys_for(token) == []
    assert await v.store.lookup(v.root) is not None
