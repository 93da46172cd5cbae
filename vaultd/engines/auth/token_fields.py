"""The token_* fields every Vault credential role or user carries (sdk/helper/tokenutil), and the auth spec.

`token_fields(*legacy)` declares them for a Path, with the legacy names a backend still accepts (AppRole:
policies, period; Userpass: policies, ttl, max_ttl, bound_cidrs). `parse_token_settings` applies a request to
stored settings exactly as Vault's ParseTokenFields then UpgradeValue do: a legacy field given alone sets its
token_* field and is mirrored on reads; a token_* field given alone drops the mirror. `token_data` is Vault's
PopulateTokenData; `auth_spec` is what a login hands the core (PopulateTokenAuth).

CIDRs: token_bound_cidrs take addresses or blocks (Vault's ParseAddrs, a /32 printed as the bare address);
`cidr_blocks` is the stricter check AppRole's secret-id CIDRs get (net.ParseCIDR: a '/' is required), and
`source_allowed` tests the client's address against a list, not knowing it when the request does not say.
"""

import dataclasses
import ipaddress
import json

from vaultd.sdk.errors import InvalidRequest
from vaultd.sdk.path import Field, FieldData, FieldType
from vaultd.sdk.request import Request

# Vault's logical.TokenType names as a role accepts and reads them back; "default" lets the mount decide.
token_types = ("default", "service", "batch")
# Legacy name -> the token_* field it mirrors (tokenutil.UpgradeValue's pairs).
legacy_pairs = {
    "policies": "token_policies",
    "period": "token_period",
    "ttl": "token_ttl",
    "max_ttl": "token_max_ttl",
    "bound_cidrs": "token_bound_cidrs",
}

_declared = {
    "token_bound_cidrs": Field(FieldType.STRING_LIST, "CIDR blocks or addresses that may use the token."),
    "token_explicit_max_ttl": Field(FieldType.DURATION, "A hard cap on the token's lifetime, renewals included."),
    "token_max_ttl": Field(FieldType.DURATION, "The maximum lifetime of the generated token."),
    "token_no_default_policy": Field(FieldType.BOOL, "Do not attach the 'default' policy."),
    "token_num_uses": Field(FieldType.INT, "Times the token may be used; 0 is unlimited."),
    "token_period": Field(FieldType.DURATION, "Makes the token periodic, renewable by this much forever."),
    "token_policies": Field(FieldType.STRING_LIST, "Policies of the generated token."),
    "token_type": Field(FieldType.STRING, "default, service or batch."),
    "token_ttl": Field(FieldType.DURATION, "The initial TTL of the generated token."),
}
_declared_legacy = {
    "policies": Field(FieldType.STRING_LIST, 'Use "token_policies" instead.'),
    "period": Field(FieldType.DURATION, 'Use "token_period" instead.'),
    "ttl": Field(FieldType.DURATION, 'Use "token_ttl" instead.'),
    "max_ttl": Field(FieldType.DURATION, 'Use "token_max_ttl" instead.'),
    "bound_cidrs": Field(FieldType.STRING_LIST, 'Use "token_bound_cidrs" instead.'),
}

assert _declared_legacy.keys() == legacy_pairs.keys()
assert set(legacy_pairs.values()) <= _declared.keys()


@dataclasses.dataclass
class TokenSettings:
    """Vault's tokenutil.TokenParams. Durations are whole seconds."""

    token_bound_cidrs: list[str] = dataclasses.field(default_factory=list)
    token_explicit_max_ttl: int = 0
    token_max_ttl: int = 0
    token_no_default_policy: bool = False
    token_num_uses: int = 0
    token_period: int = 0
    token_policies: list[str] = dataclasses.field(default_factory=list)
    token_type: str = "default"
    token_ttl: int = 0
    # invariant: each name here is a key of legacy_pairs, and its value is the token_* field it names
    mirrored: list[str] = dataclasses.field(default_factory=list)

    def copy(self) -> "TokenSettings":
        return TokenSettings(**json.loads(json.dumps(dataclasses.asdict(self))))


def token_fields(*legacy: str) -> dict[str, Field]:
    """The Path field declarations: every token_* field, plus the legacy names this backend accepts."""
    assert set(legacy) <= legacy_pairs.keys(), legacy
    return {**_declared, **{name: _declared_legacy[name] for name in legacy}}


def parse_token_settings(fields: FieldData, current: TokenSettings) -> tuple[TokenSettings, list[str]]:
    """`current` with the request's token fields applied, and any warnings. Raises InvalidRequest, having
    changed nothing, when a value is out of range."""
    settings, warnings = current.copy(), []
    for name in _declared:
        if name != "token_type" and fields.provided(name):
            setattr(settings, name, _converted(name, fields.get(name)))
    if fields.provided("token_type"):
        settings.token_type, warnings = _token_type(fields.get("token_type"))
    mirrored = set(settings.mirrored)
    for old, new in legacy_pairs.items():
        if fields.provided(new):
            # the new name wins; the old one stays mirrored only if it was sent too
            mirrored.discard(old)
            if fields.provided(old):
                mirrored.add(old)
        elif fields.provided(old):
            setattr(settings, new, _converted(old, fields.get(old)))
            mirrored.add(old)
    settings.mirrored = sorted(mirrored)
    _check(settings)
    return settings, warnings


def _converted(name: str, value: object) -> object:
    if name in ("token_bound_cidrs", "bound_cidrs"):
        return addresses(value)
    if name == "policies":
        return sanitize_policies(value)  # Vault parses only the legacy name (policyutil.ParsePolicies)
    return value


def _token_type(value: str) -> tuple[str, list[str]]:
    if value in ("", "default"):
        return "default", []
    if value in ("service", "batch"):
        return value, []
    if value in ("default-service", "default-batch"):
        adjusted = value.removeprefix("default-")
        return adjusted, [f"{value} has no useful meaning; adjusting to {adjusted}"]
    raise InvalidRequest(f"invalid 'token_type' value {json.dumps(value)}")


def _check(settings: TokenSettings) -> None:
    """Vault's ParseTokenFields checks, in its order; explicit_max_ttl is checked too, which Vault forgets."""
    for name in ("token_max_ttl", "token_period", "token_num_uses", "token_explicit_max_ttl"):
        if getattr(settings, name) < 0:
            raise InvalidRequest(f"'{name}' cannot be negative")
    if settings.token_type == "batch" and settings.token_period:
        raise InvalidRequest("'token_type' cannot be 'batch' or 'default_batch' when set to generate periodic tokens")
    if settings.token_type == "batch" and settings.token_num_uses:
        raise InvalidRequest(
            "'token_type' cannot be 'batch' or 'default_batch' when set to generate tokens with limited use count"
        )
    if settings.token_ttl < 0:
        raise InvalidRequest("'token_ttl' cannot be negative")
    if settings.token_ttl > 0 and settings.token_max_ttl > 0 and settings.token_ttl > settings.token_max_ttl:
        raise InvalidRequest("'token_ttl' cannot be greater than 'token_max_ttl'")


def token_data(settings: TokenSettings) -> dict:
    """The fields a role or user read shows (PopulateTokenData), with each mirrored legacy field that is set."""
    data = {name: getattr(settings, name) for name in _declared}
    data["token_bound_cidrs"] = list(settings.token_bound_cidrs)
    data["token_policies"] = list(settings.token_policies)
    for old in settings.mirrored:
        value = getattr(settings, legacy_pairs[old])
        if value:
            data[old] = list(value) if isinstance(value, list) else value
    return dict(sorted(data.items()))


def auth_spec(settings: TokenSettings, metadata: dict[str, str], display_name: str) -> dict:
    """The token a successful login asks the core for. `token_type` and `bound_cidrs` ride along for a core
    that can honour them; the rest is the core's login contract."""
    return {
        "policies": list(settings.token_policies),
        "metadata": dict(metadata),
        "display_name": display_name,
        "ttl": settings.token_ttl,
        "max_ttl": settings.token_max_ttl,
        "period": settings.token_period,
        "num_uses": settings.token_num_uses,
        "renewable": True,
        "explicit_max_ttl": settings.token_explicit_max_ttl,
        "no_default_policy": settings.token_no_default_policy,
        "token_type": settings.token_type,
        "bound_cidrs": list(settings.token_bound_cidrs),
    }


def display_name(request: Request, method: str, name: str) -> str:
    """As Vault's core names a login token: the mount path without "auth/", '/' turned to '-', then the
    method's own name, a trailing '-' trimmed ("userpass-bob"; AppRole names none, so "approle")."""
    source = request.mount_point.removeprefix("auth/") or method + "/"
    return (source.replace("/", "-") + name).removesuffix("-")


def sanitize_policies(names: list[str]) -> list[str]:
    """Vault's policyutil.ParsePolicies: trimmed, lower-cased, blanks dropped, "root" alone if present, sorted."""
    cleaned = {name.strip().lower() for name in names} - {""}
    return ["root"] if "root" in cleaned else sorted(cleaned)


def addresses(values: list[str]) -> list[str]:
    """Vault's parseutil.ParseAddrs: each an IP address or a CIDR block, printed as go-sockaddr does."""
    parsed = []
    for value in values:
        try:
            interface = ipaddress.ip_interface(value.strip())
        except ValueError:
            raise InvalidRequest(f"error parsing address {json.dumps(value)}") from None
        single = interface.network.prefixlen == interface.max_prefixlen
        parsed.append(str(interface.ip) if single else str(interface))
    return parsed


def cidr_blocks(values: list[str], problem: str) -> list[str]:
    """Vault's cidrutil.ValidateCIDRListSlice: every value a CIDR block with its '/'; kept as written."""
    blocks = [value.strip() for value in values]
    for block in blocks:
        try:
            ipaddress.ip_network(block, strict=False)
        except ValueError:
            raise InvalidRequest(problem) from None
        if "/" not in block:
            raise InvalidRequest(problem)
    return blocks


def within(blocks: list[str], outer: list[str]) -> bool:
    """Whether every block lies inside some block of `outer` (Vault's cidrutil.SubsetBlocks); true if no outer."""
    if not outer:
        return True
    networks = [ipaddress.ip_network(block, strict=False) for block in outer]
    return all(
        any(inner.version == network.version and inner.subnet_of(network) for network in networks)
        for inner in (ipaddress.ip_network(block, strict=False) for block in blocks)
    )


def remote_address(request: Request) -> str:
    """The client's address. The SDK's Request does not carry one yet (the core knows it as
    `LogicalRequest.remote_address`); until it does this is "", and every CIDR check fails closed."""
    return getattr(request, "remote_address", "") or ""


def source_allowed(request: Request, blocks: list[str]) -> bool | None:
    """Whether the client's address lies in one of `blocks`; None when its address is unknown."""
    try:
        ip = ipaddress.ip_address(remote_address(request))
    except ValueError:
        return None
    networks = (ipaddress.ip_network(block, strict=False) for block in blocks)
    return any(ip.version == network.version and ip in network for network in networks)
