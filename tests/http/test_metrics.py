"""vaultd/http/metrics.py: sys/metrics answers as Vault's (formats, content types, auth, sealed), the middleware
times and counts every request under bounded labels, the gauges are read from the core at scrape time, and
each application has its own registry.

How: each test builds a small aiohttp app the way `make_app` will (the real error middleware first, then
`install_metrics`, then a /v1 catch-all) over a fake core holding only what metrics.py reads: a barrier, the
audit broker's failure count, a token store, real ACLs from real policies, a real Router and a FakeClock. The
app runs in-process with aiohttp's TestServer/TestClient under `asyncio.run`. Latency is "measured" by
advancing the fake clock inside the handler, so no test sleeps. One test repeats the essentials against a
real in-process Core over a MemoryBackend, so the fake cannot drift from the attributes the core has.
"""

import asyncio
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from storage import MemoryBackend
from vaultd.clock import FakeClock
from vaultd.core.core import Core
from vaultd.core.mounts import MountEntry, Router
from vaultd.core.physical import LocalPhysical
from vaultd.core.policy import ACL, parse_policy
from vaultd.core.tokens import TokenEntry
from vaultd.http import server
from vaultd.http.common import CORE
from vaultd.http.metrics import METRICS, PROMETHEUS_CONTENT_TYPE, classify, install_metrics, path_classes_max
from vaultd.sdk.errors import InvalidRequest, PermissionDenied, Sealed

READER = "reader-token"
KV_ONLY = "kv-only-token"
POLICIES = {
    "metrics-reader": parse_policy("metrics-reader", 'path "sys/metrics" { capabilities = ["read"] }'),
    "kv": parse_policy("kv", 'path "secret/*" { capabilities = ["read", "list"] }'),
}
METRIC_NAMES = (
    "vault_core_handle_request_seconds", "vaultd_http_requests_total", "vaultd_storage_apply_seconds",
    "vault_core_unsealed", "vault_barrier_key_term", "vault_barrier_encryptions", "vault_audit_log_request_failure",
)  # fmt: skip


class FakeBarrier:
    def __init__(self):
        self.sealed = False

    def key_status(self) -> dict:
        if self.sealed:
            raise Sealed()
        return {"term": 3, "install_time": "2026-01-01T00:00:00Z", "encryptions": 42}


class FakeAudit:
    failures = 0


class FakeTokens:
    def __init__(self, entries: dict[str, TokenEntry]):
        self.entries = entries

    async def lookup(self, token: str) -> TokenEntry | None:
        return self.entries.get(token)

    async def use(self, token: str) -> TokenEntry | None:
        entry = self.entries.get(token)
        if entry is not None and entry.num_uses:
            entry.num_uses -= 1
            if entry.num_uses == 0:
                del self.entries[token]
        return entry


class FakePolicies:
    async def acl(self, names: list[str]) -> ACL:
        return ACL([POLICIES[name] for name in names if name in POLICIES])


class FakeCore:
    def __init__(self):
        self.clock = FakeClock()
        self.barrier = FakeBarrier()
        self.audit = FakeAudit()
        self.token_count = None
        self.tokens = FakeTokens({
            READER: TokenEntry(policies=["default", "metrics-reader"], path="auth/token/create"),
            KV_ONLY: TokenEntry(policies=["default", "kv"], path="auth/token/create"),
        })  # fmt: skip
        self.policies = FakePolicies()
        self.router = Router(lambda entry: object())
        for path, table in (("secret/", "mounts"), ("kv/", "mounts"), ("auth/token/", "auth")):
            self.router.mount(MountEntry(path, "kv", path.strip("/"), "accessor", table=table))


async def _logical(request: web.Request) -> web.Response:
    """The catch-all's stand-in: `?advance=s` moves the clock (the request's latency); some paths fail."""
    request.app[METRICS].clock.advance(float(request.query.get("advance", "0")))
    path = request.match_info["path"]
    if path == "secret/data/denied":
        raise PermissionDenied()
    if path == "secret/data/invalid":
        raise InvalidRequest("bad")
    if path == "secret/data/bug":
        raise RuntimeError("a bug")
    if path == "secret/data/patch":
        raise web.HTTPUnsupportedMediaType()  # an aiohttp exception the error middleware lets through
    return web.json_response({"data": {}})


def build_app(core) -> web.Application:
    """What make_app will do, in its order."""
    app = web.Application(middlewares=[server._error_middleware])
    app[CORE] = core
    install_metrics(app, core)
    app.router.add_route("*", "/v1/{path:.*}", _logical)
    return app


def with_client(test):
    """Run `test(client, core)` against a fresh app over a fresh FakeCore."""

    async def run(core):
        async with TestClient(TestServer(build_app(core))) as client:
            return await test(client, core)

    return asyncio.run(run(FakeCore()))


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus text sample, by name and exact labels."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name and dict(re.findall(r'(\w+)="([^"]*)"', match[2] or "")) == labels:
            return float(match[3])
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


async def _scrape(client) -> str:
    response = await client.get("/v1/sys/metrics?format=prometheus", headers={"X-Vault-Token": READER})
    assert response.status == 200
    return await response.text()


# --- sys/metrics --------------------------------------------------------------------------------------------


def test_prometheus_format_has_every_metric_and_vaults_content_type():
    async def test(client, core):
        response = await client.get("/v1/sys/metrics", params={"format": "prometheus"},
                                    headers={"X-Vault-Token": READER})
        assert response.status == 200
        assert response.headers["Content-Type"] == PROMETHEUS_CONTENT_TYPE
        assert PROMETHEUS_CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
        return await response.text()

    text = with_client(test)
    for name in METRIC_NAMES:
        assert f"\n# TYPE {name.removesuffix('_total')}" in text or f"# TYPE {name} " in text, name
    assert _sample(text, "vault_core_unsealed") == 1
    assert _sample(text, "vault_barrier_key_term") == 3
    assert _sample(text, "vault_barrier_encryptions") == 42
    assert _sample(text, "vault_audit_log_request_failure") == 0


@pytest.mark.parametrize(
    ("accept", "expected_type"),
    [
        ("application/openmetrics-text; version=1.0.0", PROMETHEUS_CONTENT_TYPE),
        ("text/html, prometheus/telemetry", PROMETHEUS_CONTENT_TYPE),
        ("application/json", "application/json"),
    ],
)
def test_the_accept_header_selects_prometheus_as_in_vault(accept, expected_type):
    async def test(client, core):
        response = await client.get("/v1/sys/metrics", headers={"X-Vault-Token": READER, "Accept": accept})
        assert response.status == 200
        return response.headers["Content-Type"]

    assert with_client(test) == expected_type


def test_no_format_is_a_go_metrics_json_dump():
    async def test(client, core):
        core.audit.failures = 2
        await client.get("/v1/secret/data/a", params={"advance": "0.25"})
        core.clock.advance(10)
        response = await client.get("/v1/sys/metrics", headers={"X-Vault-Token": READER})
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        return await response.json()

    dump = with_client(test)
    assert list(dump) == ["Timestamp", "Gauges", "Points", "Counters", "Samples"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC", dump["Timestamp"])
    assert dump["Points"] == []
    gauges = {gauge["Name"]: gauge["Value"] for gauge in dump["Gauges"]}
    assert gauges == {"vault.core.unsealed": 1, "vault.barrier.key_term": 3, "vault.barrier.encryptions": 42,
                      "vault.audit.log_request_failure": 2}
    requests = {c["Labels"]["status_class"]: c for c in dump["Counters"] if c["Name"] == "vaultd.http.requests"}
    assert requests["2xx"]["Count"] == 1 and requests["2xx"]["Sum"] == 1  # the scrape itself is not done yet
    [kv_read] = [s for s in dump["Samples"] if s["Labels"].get("path_class") == "secret/data"]
    assert kv_read["Name"] == "vault.core.handle_request"
    assert kv_read["Labels"] == {"method": "GET", "path_class": "secret/data"}
    assert kv_read["Count"] == 1 and kv_read["Sum"] == pytest.approx(250.0)  # milliseconds, as go-metrics
    assert kv_read["Mean"] == pytest.approx(250.0)
    assert kv_read["Min"] == pytest.approx(100.0) and kv_read["Max"] == pytest.approx(250.0)  # bucket edges
    assert set(kv_read) == {"Name", "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"}


def test_unknown_format_is_a_400_in_plain_text():
    async def test(client, core):
        response = await client.get("/v1/sys/metrics?format=x", headers={"X-Vault-Token": READER})
        return response.status, response.headers["Content-Type"], await response.text()

    assert with_client(test) == (400, "text/plain", 'metric response format "x" unknown')


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Vault-Token": "no-such-token"}, {"X-Vault-Token": KV_ONLY}, {"Authorization": "Bearer " + KV_ONLY}],
    ids=["no token", "unknown token", "token without read on sys/metrics", "bearer token without read"],
)
def test_without_a_token_allowed_to_read_sys_metrics_it_is_403(headers):
    async def test(client, core):
        response = await client.get("/v1/sys/metrics?format=prometheus", headers=headers)
        return response.status, await response.json()

    assert with_client(test) == (403, {"errors": ["permission denied"]})


def test_a_bearer_token_with_read_is_accepted():
    async def test(client, core):
        return (await client.get("/v1/sys/metrics", headers={"Authorization": "Bearer " + READER})).status

    assert with_client(test) == 200


def test_a_limited_use_token_spends_a_use_per_read():
    async def test(client, core):
        core.tokens.entries[READER].num_uses = 1
        first = await client.get("/v1/sys/metrics", headers={"X-Vault-Token": READER})
        second = await client.get("/v1/sys/metrics", headers={"X-Vault-Token": READER})
        return first.status, second.status

    assert with_client(test) == (200, 403)


def test_sealed_is_503_and_other_methods_405():
    async def test(client, core):
        core.barrier.sealed, core.tokens, core.policies = True, None, None
        sealed = await client.get("/v1/sys/metrics", headers={"X-Vault-Token": READER})
        posted = await client.post("/v1/sys/metrics", headers={"X-Vault-Token": READER})
        return sealed.status, await sealed.json(), posted.status

    assert with_client(test) == (503, {"errors": ["Vault is sealed"]}, 405)


def test_the_sealed_gauges_say_sealed_and_drop_the_key_term():
    core = FakeCore()
    core.barrier.sealed = True
    families = {family.name: family for family in build_app(core)[METRICS].registry.collect()}
    assert families["vault_core_unsealed"].samples[0].value == 0
    assert "vault_barrier_key_term" not in families and "vault_barrier_encryptions" not in families


# --- the middleware -----------------------------------------------------------------------------------------


def test_a_request_increments_the_histogram_of_its_path_class():
    async def test(client, core):
        before = await _scrape(client)
        await client.get("/v1/secret/data/app/config", params={"advance": "0.003"})
        return before, await _scrape(client)

    before, after = with_client(test)
    labels = {"method": "GET", "path_class": "secret/data"}
    assert "secret/data" not in before
    assert _sample(after, "vault_core_handle_request_seconds_count", **labels) == 1
    assert _sample(after, "vault_core_handle_request_seconds_sum", **labels) == pytest.approx(0.003)
    assert _sample(after, "vault_core_handle_request_seconds_bucket", le="0.0025", **labels) == 0
    assert _sample(after, "vault_core_handle_request_seconds_bucket", le="0.005", **labels) == 1
    # the first scrape is counted by the second one
    assert _sample(after, "vault_core_handle_request_seconds_count", method="GET", path_class="sys/metrics") == 1


def test_errors_turned_into_responses_are_counted_by_the_status_the_client_gets():
    async def test(client, core):
        names = ("ok", "denied", "invalid", "bug", "patch")
        statuses = [(await client.get(f"/v1/secret/data/{name}")).status for name in names]
        statuses.append((await client.get("/ui/nowhere")).status)  # no route at all: aiohttp's own 404
        return statuses, await _scrape(client)

    statuses, text = with_client(test)
    assert statuses == [200, 403, 400, 500, 415, 404]
    assert _sample(text, "vaultd_http_requests_total", status_class="2xx") == 1
    assert _sample(text, "vaultd_http_requests_total", status_class="4xx") == 4
    assert _sample(text, "vaultd_http_requests_total", status_class="5xx") == 1
    assert _sample(text, "vault_core_handle_request_seconds_count", method="GET", path_class="other") == 1


def test_a_thousand_kv_paths_and_junk_methods_make_a_handful_of_label_values():
    async def test(client, core):
        for number in range(1000):
            await client.get(f"/v1/secret/data/team-{number}/key")
            await client.get(f"/v1/kv/user-{number}")
        for number in range(50):
            await client.get(f"/v1/unmounted-{number}/x")
            await client.get(f"/v1/sys/made-up-{number}")
            await client.get(f"/v1/auth/token/{number}")
        for method in ("PROPFIND", "MKCOL", "PURGE", "LOCK", "UNLOCK", "COPY", "MOVE", "REPORT", "SEARCH"):
            await client.request(method, "/v1/secret/data/x")  # methods aiohttp's C parser knows
        metrics = client.app[METRICS]
        for number in range(50):  # vaultd serves with the pure-Python parser, which takes any token as a method
            metrics.observe_request(f"VERB{number}", "/v1/secret/data/x", 200, 0.001)
        return await _scrape(client)

    text = with_client(test)
    found = re.findall(r'vault_core_handle_request_seconds_count\{method="([^"]*)",path_class="([^"]*)"\}', text)
    assert {path_class for _, path_class in found} == {"secret/data", "kv", "other", "sys/other", "auth/token"}
    assert {method for method, _ in found} == {"GET", "other"}
    assert "team-" not in text and "user-" not in text and "unmounted-" not in text and "VERB" not in text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/sys/mounts/secret", "sys/mounts"),
        ("/v1/sys/policies/acl/admin", "sys/policies"),
        ("/v1/sys/metrics", "sys/metrics"),
        ("/v1/sys/secret-name-in-path", "sys/other"),
        ("/v1/sys", "sys/other"),
        ("/v1/secret/data/a/b/c", "secret/data"),
        ("/v1/secret/metadata/a", "secret/metadata"),
        ("/v1/secret/a-key-named-freely", "secret"),
        ("/v1/secret", "secret"),
        ("/v1/kv/data", "kv/data"),
        ("/v1/auth/token/lookup-self", "auth/token/lookup-self"),
        ("/v1/auth/token/some-token-value", "auth/token"),
        ("/v1/nowhere/data", "other"),
        ("/ui/vault/secrets", "other"),
    ],
)
def test_path_classes(path, expected):
    assert classify(path, FakeCore().router) == expected


def test_without_a_router_sealed_paths_outside_sys_are_other():
    assert classify("/v1/secret/data/a", None) == "other"
    assert classify("/v1/sys/seal-status", None) == "sys/seal-status"


def test_path_classes_are_capped_whatever_mounts_come_and_go():
    core = FakeCore()
    metrics = build_app(core)[METRICS]
    for number in range(path_classes_max * 3):
        core.router.mount(MountEntry(f"mount-{number}/", "kv", str(number), "accessor"))
        metrics.observe_request("GET", f"/v1/mount-{number}/key", 200, 0.001)
    labels = {sample.labels["path_class"] for family in metrics.registry.collect()
              if family.name == "vault_core_handle_request_seconds" for sample in family.samples}
    assert len(labels) == path_classes_max + 1 and "other" in labels


# --- registries and the storage hook ------------------------------------------------------------------------


def test_each_app_has_its_own_registry_and_the_global_one_is_untouched():
    first, second = build_app(FakeCore()), build_app(FakeCore())
    assert first[METRICS].registry is not second[METRICS].registry
    first[METRICS].observe_request("GET", "/v1/sys/health", 200, 0.001)
    assert first[METRICS].registry.get_sample_value("vaultd_http_requests_total", {"status_class": "2xx"}) == 1
    assert second[METRICS].registry.get_sample_value("vaultd_http_requests_total", {"status_class": "2xx"}) == 0
    assert REGISTRY.get_sample_value("vault_core_handle_request_seconds_count") is None


def test_observe_apply_feeds_the_storage_histogram():
    metrics = build_app(FakeCore())[METRICS]
    for seconds in (0.0002, 0.004, 0.004):
        metrics.observe_apply(seconds)
    registry = metrics.registry
    assert registry.get_sample_value("vaultd_storage_apply_seconds_count") == 3
    assert registry.get_sample_value("vaultd_storage_apply_seconds_sum") == pytest.approx(0.0082)
    assert registry.get_sample_value("vaultd_storage_apply_seconds_bucket", {"le": "0.00025"}) == 1


def test_install_refuses_to_come_after_the_catch_all():
    app = web.Application()
    app.router.add_route("*", "/v1/{path:.*}", _logical)
    with pytest.raises(AssertionError, match="before the catch-all"):
        install_metrics(app, FakeCore())


# --- against a real in-process core -------------------------------------------------------------------------


def test_a_real_core_serves_the_same_attributes():
    async def run():
        core = Core(LocalPhysical(MemoryBackend()), FakeClock())
        keys = await core.initialize({"secret_shares": 1, "secret_threshold": 1})
        await core.unseal(bytes.fromhex(keys["keys"][0]))
        async with TestClient(TestServer(build_app(core))) as client:
            allowed = await client.get("/v1/sys/metrics?format=prometheus",
                                       headers={"X-Vault-Token": keys["root_token"]})
            denied = await client.get("/v1/sys/metrics", headers={"X-Vault-Token": "hvs.unknown"})
            await core.seal_vault()
            sealed = await client.get("/v1/sys/metrics", headers={"X-Vault-Token": keys["root_token"]})
            return allowed.status, await allowed.text(), denied.status, sealed.status

    allowed, text, denied, sealed = asyncio.run(run())
    assert (allowed, denied, sealed) == (200, 403, 503)
    assert _sample(text, "vault_core_unsealed") == 1
    assert _sample(text, "vault_barrier_key_term") == 1
    assert _sample(text, "vault_barrier_encryptions") > 0
    assert _sample(text, "vault_audit_log_request_failure") == 0
