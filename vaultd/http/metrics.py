"""Telemetry: request latency and status metrics, gauges read from the core at scrape time, and sys/metrics.

Each application owns a `VaultMetrics` with its own `CollectorRegistry` (never prometheus_client's global one),
so several apps in one process never collide. `install_metrics(app, core)` puts it on the app under `METRICS`,
appends `metrics_middleware` and adds the `GET /v1/sys/metrics` route. Call it in `make_app` after the error
middleware is set and before the `/v1` catch-all route is added:

    middlewares=[_error_middleware]  →  then install_metrics() appends  →  [_error_middleware, metrics_middleware]

so the metrics middleware is the outermost one inside the error middleware. An exception passes through it
on its way out; it counts the status the error middleware will turn it into, using the same table
(`errors.status_of`), so 4xx and 5xx made from exceptions are counted as what the client receives.

Labels are bounded by construction: the HTTP method (a fixed set, else "other"), the path class (the mount
the path falls in, plus one segment from a fixed vocabulary, at most `path_classes_max` of them, else
"other"; never the full path, never the body) and the status class (1xx..5xx).

sys/metrics (vault_api.md §6.1): `?format=prometheus`, or `Accept: application/openmetrics-text` or
`prometheus/telemetry`, → Prometheus text 0.0.4; no format → a JSON dump shaped like go-metrics'
`DisplayMetrics`; any other format → 400 text/plain. The caller needs a token whose ACL allows `read` on
`sys/metrics`, as in Vault; while sealed → 503.
"""

import datetime
import json
import math

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from ..core.core import Core
from ..sdk.errors import PermissionDenied, Sealed, VaultError
from .errors import error_response, json_response, status_of

METRICS_PATH = "sys/metrics"
# Vault's expfmt.FmtText. Not prometheus_client's CONTENT_TYPE_LATEST: that is version=1.0.0 in 0.26.
PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
OPENMETRICS_MIME_TYPE = "application/openmetrics-text"
PROMETHEUS_SCHEMA_MIME_TYPE = "prometheus/telemetry"

OTHER = "other"  # the label value of every method or path class outside the bounded sets
methods = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "LIST", "OPTIONS"})
# Second segments of sys/ paths that Vault serves; any other sys/ path is "sys/other".
sys_endpoints = frozenset({
    "audit", "audit-hash", "auth", "capabilities", "capabilities-accessor", "capabilities-self", "config",
    "generate-root", "ha-status", "health", "host-info", "in-flight-req", "init", "internal", "key-status",
    "leader", "leases", "license", "loggers", "metrics", "mfa", "monitor", "mounts", "namespaces", "plugins",
    "policies", "policy", "pprof", "quotas", "raw", "rekey", "rekey-recovery-key", "remount", "renew",
    "replication", "revoke", "revoke-force", "revoke-prefix", "rotate", "seal", "seal-status", "step-down",
    "storage", "tools", "unseal", "version-history", "wrapping",
})  # fmt: skip
# Engine API words that may follow a mount path in its class ("secret/data", "auth/token/create"). A segment
# outside this list (a KV key, a user name) is never a label: the class is the mount alone.
engine_segments = frozenset({
    "accessors", "backup", "ca", "cache-config", "cert", "certs", "config", "create", "create-orphan", "creds",
    "crl", "data", "datakey", "decrypt", "delete", "destroy", "encrypt", "export", "hash", "hmac", "issue",
    "keys", "login", "lookup", "lookup-accessor", "lookup-self", "metadata", "random", "renew",
    "renew-accessor", "renew-self", "restore", "revoke", "revoke-accessor", "revoke-orphan", "revoke-self",
    "rewrap", "role", "roles", "rotate-root", "sign", "static-creds", "static-roles", "subkeys", "tidy",
    "undelete", "users", "verify",
})  # fmt: skip
path_classes_max = 64  # distinct path classes one app labels; later new ones are "other" (mount churn)
status_classes = ("1xx", "2xx", "3xx", "4xx", "5xx")
request_buckets_seconds = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
apply_buckets_seconds = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Worst case of the request histogram: every method × every path class × (buckets, +Inf, _count, _sum, _created).
request_series_max = (len(methods) + 1) * (path_classes_max + 1) * (len(request_buckets_seconds) + 4)

assert request_series_max <= 12_000, "the request histogram could grow past what one scrape should carry"
assert OTHER not in methods and f"sys/{OTHER}" not in sys_endpoints
assert list(request_buckets_seconds) == sorted(request_buckets_seconds)
assert list(apply_buckets_seconds) == sorted(apply_buckets_seconds)

_gauge_help = {
    "vault_core_unsealed": "1 while the barrier is unsealed, else 0.",
    "vault_barrier_key_term": "The barrier's active key term (only while unsealed).",
    "vault_barrier_encryptions": "Encryptions by the active key term (only while unsealed).",
    "vault_audit_log_request_failure": "Audit entries no device accepted since start (monotonic).",
    "vault_token_count": "Tokens in the token store, as of the last maintenance pass (only while unsealed).",
}


class VaultMetrics:
    """One application's registry and instruments. `observe_apply` may be called from any thread (the
    instruments lock); the rest runs on the event loop."""

    def __init__(self, core: Core):
        self.core = core
        self.clock = core.clock
        self.registry = CollectorRegistry()
        self.started = self.clock.now()
        self._path_classes: set[str] = {OTHER}  # invariant: len <= path_classes_max + 1
        self.request_seconds = Histogram(
            "vault_core_handle_request_seconds", "Time to serve an HTTP request, by method and path class.",
            ["method", "path_class"], buckets=request_buckets_seconds, registry=self.registry,
        )
        self.requests = Counter(
            "vaultd_http_requests", "HTTP responses by status class, errors included.", ["status_class"],
            registry=self.registry,
        )
        for status_class in status_classes:  # present at 0 from the start, so rate() sees the first error
            self.requests.labels(status_class)
        self.storage_apply_seconds = Histogram(
            "vaultd_storage_apply_seconds", "Time of one durable storage apply (encode, write, fsync).",
            buckets=apply_buckets_seconds, registry=self.registry,
        )
        self.registry.register(_CoreGauges(core))

    def observe_apply(self, seconds: float) -> None:
        """The physical layer's hook: one storage apply took `seconds`. Safe from any thread."""
        assert seconds >= 0, seconds
        self.storage_apply_seconds.observe(seconds)

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        assert 100 <= status <= 599 and seconds >= 0, (status, seconds)
        method = method if method in methods else OTHER
        self.request_seconds.labels(method, self.path_class(path)).observe(seconds)
        self.requests.labels(status_classes[status // 100 - 1]).inc()

    def path_class(self, path: str) -> str:
        """The bounded label of a request path: see `classify`, capped at `path_classes_max` classes."""
        label = classify(path, self.core.router)
        if label not in self._path_classes:
            if len(self._path_classes) > path_classes_max:
                return OTHER
            self._path_classes.add(label)
        return label

    def go_metrics_dump(self) -> dict:
        """The registry as go-metrics' DisplayMetrics JSON: gauges, counters, and histograms as samples."""
        now = self.clock.now()
        uptime_seconds = max(now - self.started, 0.0)
        dump: dict = {"Timestamp": _go_time(now), "Gauges": [], "Points": [], "Counters": [], "Samples": []}
        for family in self.registry.collect():
            if family.type == "gauge":
                dump["Gauges"] += [
                    {"Name": _go_name(family.name), "Value": sample.value, "Labels": dict(sample.labels)}
                    for sample in family.samples
                ]
            elif family.type == "counter":
                dump["Counters"] += [
                    _counter_value(family.name, sample.value, sample.labels, uptime_seconds)
                    for sample in family.samples
                    if sample.name.endswith("_total")
                ]
            elif family.type == "histogram":
                dump["Samples"] += _histogram_values(family, uptime_seconds)
        return dump


METRICS = web.AppKey("metrics", VaultMetrics)


def classify(path: str, router) -> str:
    """`sys/<endpoint>`; else the mount the path falls in plus one engine word (`secret/data`); else "other".

    `path` is the URL path. Outside /v1/, for an unmounted path, or while sealed (no router) → "other"."""
    if not path.startswith("/v1/"):
        return OTHER
    relative = path[len("/v1/") :]
    segments = relative.split("/")
    if segments[0] == "sys":
        endpoint = segments[1] if len(segments) > 1 else ""
        return f"sys/{endpoint}" if endpoint in sys_endpoints else f"sys/{OTHER}"
    mount = router.match(relative) if router is not None else None
    if mount is None:
        return OTHER
    rest = relative[len(mount.path) :].split("/", 1)[0] if len(relative) > len(mount.path) else ""
    label = mount.path.rstrip("/")
    return f"{label}/{rest}" if rest in engine_segments else label


class _CoreGauges:
    """A collector that reads the core at scrape time, so no gauge can go stale."""

    def __init__(self, core: Core):
        self._core = core

    def describe(self):
        return [GaugeMetricFamily(name, help_text) for name, help_text in _gauge_help.items()]

    def collect(self):
        core = self._core
        sealed = core.barrier.sealed
        yield _gauge("vault_core_unsealed", 0 if sealed else 1)
        if not sealed:  # key_status() is synchronous: nothing can seal the barrier between the two reads
            status = core.barrier.key_status()
            yield _gauge("vault_barrier_key_term", status["term"])
            yield _gauge("vault_barrier_encryptions", status["encryptions"])
        yield _gauge("vault_audit_log_request_failure", core.audit.failures)
        if not sealed and core.token_count is not None:
            yield _gauge("vault_token_count", core.token_count)


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, _gauge_help[name], value=value)


# --- the HTTP side ---------------------------------------------------------------------------------------


def install_metrics(app: web.Application, core: Core) -> None:
    """Put a VaultMetrics on `app`, append `metrics_middleware`, route GET /v1/sys/metrics. See the module
    docstring for where to call it: after the error middleware, before the /v1 catch-all."""
    assert METRICS not in app, "metrics are installed once per application"
    assert not any(
        resource.canonical.startswith(("/v1/{", "/{")) for resource in app.router.resources()
    ), "install_metrics must come before the catch-all routes, or they would shadow /v1/sys/metrics"
    app[METRICS] = VaultMetrics(core)
    app.middlewares.append(metrics_middleware)
    app.router.add_route("*", "/v1/" + METRICS_PATH, metrics_handler)


@web.middleware
async def metrics_middleware(request: web.Request, handler) -> web.StreamResponse:
    """Time every request and count its status; an exception counts as the status it will become.
    A cancelled request (the client went away) is not counted: no status reached anyone."""
    metrics = request.app[METRICS]
    started = metrics.clock.monotonic()
    try:
        response = await handler(request)
    except Exception as error:
        metrics.observe_request(request.method, request.path, _status_of_exception(error),
                                metrics.clock.monotonic() - started)
        raise
    metrics.observe_request(request.method, request.path, response.status, metrics.clock.monotonic() - started)
    return response


def _status_of_exception(error: Exception) -> int:
    """What `server._error_middleware` makes of `error`: the error table, aiohttp's own status, else 500."""
    if isinstance(error, VaultError):
        return status_of(error)
    if isinstance(error, web.HTTPException):
        return error.status
    return 500


async def metrics_handler(request: web.Request) -> web.Response:
    if request.method not in ("GET", "HEAD"):
        return error_response(405, [])
    metrics = request.app[METRICS]
    await _authorize(metrics.core, _client_token(request))
    response_format = request.query.get("format", "") or _format_from_accept(request)
    if response_format == "prometheus":
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})
    if response_format == "":
        return json_response(metrics.go_metrics_dump())
    # Vault: fmt.Sprintf("metric response format %q unknown", format), as a raw text/plain 400
    message = f"metric response format {json.dumps(response_format, ensure_ascii=False)} unknown"
    return web.Response(status=400, body=message.encode(), content_type="text/plain")


async def _authorize(core: Core, token: str) -> None:
    """Vault's check for a logical read of sys/metrics: 503 sealed, 403 without a token whose ACL allows
    `read` there. A limited-use token spends one use, as any request would. (Not audited: the core's audit
    chain is built for routed requests.)"""
    tokens, policies = core.tokens, core.policies  # a seal between the awaits below then raises Sealed
    if core.barrier.sealed or tokens is None or policies is None:
        raise Sealed()
    entry = await tokens.lookup(token) if token else None
    if entry is None:
        raise PermissionDenied()
    (await policies.acl(entry.policies)).check(METRICS_PATH, "read")
    if await tokens.use(token) is None:
        raise PermissionDenied()


def _client_token(request: web.Request) -> str:
    """As `server.client_token` (imported from there, this module would import server and server it)."""
    token = request.headers.get("X-Vault-Token", "")
    if not token and request.headers.get("Authorization", "").startswith("Bearer "):
        token = request.headers["Authorization"][len("Bearer ") :]
    return token.strip()


def _format_from_accept(request: web.Request) -> str:
    """Vault's metricsutil.FormatFromRequest: the first Accept header, or any naming prometheus/telemetry."""
    accept = request.headers.getall("Accept", [])
    if accept and accept[0].startswith(OPENMETRICS_MIME_TYPE):
        return "prometheus"
    return "prometheus" if any(PROMETHEUS_SCHEMA_MIME_TYPE in header for header in accept) else ""


# --- go-metrics JSON -------------------------------------------------------------------------------------


def _go_time(now: float) -> str:
    """Go's time.Time.String() in UTC, to the second, as go-metrics writes DisplayMetrics' Timestamp."""
    moment = datetime.datetime.fromtimestamp(round(now), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _go_name(name: str) -> str:
    """`vault_core_handle_request` → `vault.core.handle_request`: go-metrics keys join with dots."""
    return ".".join(name.split("_", 2))


def _counter_value(name: str, value: float, labels: dict, uptime_seconds: float) -> dict:
    """go-metrics aggregates increments; every counter here only ever adds 1, so each increment is 1."""
    unit = 1.0 if value else 0.0
    return {
        "Name": _go_name(name), "Count": int(value), "Rate": value / uptime_seconds if uptime_seconds else 0.0,
        "Sum": value, "Min": unit, "Max": unit, "Mean": unit, "Stddev": 0.0, "Labels": dict(labels),
    }


def _histogram_values(family, uptime_seconds: float) -> list[dict]:
    """One go-metrics sample per label set. Timers are in milliseconds there, as go-metrics' MeasureSince.
    A histogram keeps no extremes, so Min and Max are the edges of the outermost non-empty buckets."""
    timer = family.name.endswith("_seconds")
    scale, name = (1000.0, family.name.removesuffix("_seconds")) if timer else (1.0, family.name)
    series: dict[tuple, dict] = {}
    for sample in family.samples:
        labels = {key: value for key, value in sample.labels.items() if key != "le"}
        entry = series.setdefault(tuple(sorted(labels.items())), {"labels": labels, "buckets": []})
        suffix = sample.name.rsplit("_", 1)[1]
        if suffix == "bucket":
            entry["buckets"].append((float(sample.labels["le"]), sample.value))
        elif suffix in ("count", "sum"):
            entry[suffix] = sample.value
    values = []
    for entry in series.values():
        count, total = int(entry.get("count", 0)), entry.get("sum", 0.0) * scale
        low, high = _bucket_edges(sorted(entry["buckets"]))
        values.append({
            "Name": _go_name(name), "Count": count, "Rate": total / uptime_seconds if uptime_seconds else 0.0,
            "Sum": total, "Min": low * scale, "Max": high * scale, "Mean": total / count if count else 0.0,
            "Stddev": 0.0, "Labels": entry["labels"],
        })
    return values


def _bucket_edges(buckets: list[tuple[float, float]]) -> tuple[float, float]:
    """(lower edge of the first non-empty bucket, upper edge of the last; the top finite edge for +Inf)."""
    low = high = previous_edge = previous_count = 0.0
    found = False
    for edge, cumulative in buckets:
        if cumulative > previous_count:
            if not found:
                low, found = previous_edge, True
            high = edge if math.isfinite(edge) else previous_edge
        if math.isfinite(edge):
            previous_edge = edge
        previous_count = cumulative
    return low, high
