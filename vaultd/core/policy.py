"""ACL policies: Vault's policy language parsed, and requests decided, as Vault 1.15 does (vault/policy.go, acl.go).

Pure logic. Text in, `Policy` out (`parse_policy`); policies in, `ACL` out; (path, operation, data) in,
`None` or `PermissionDenied` out (`ACL.check`). The policy store keeps the texts and calls
`check_policy_writable` / `check_policy_deletable` before it writes.

How Vault decides:
- Each `path "<pattern>" {...}` block is one rule. `a/b` is exact; `a/*` (a glob only at the end) is a prefix
  rule; a `+` segment (`a/+/c`, which may also end in `*`) makes a segment-wildcard rule.
- An ACL merges the rules of all its policies per pattern (`_merge`): capabilities are unioned, and a `deny`
  anywhere leaves the merged rule deny-only. Rules on different patterns never combine.
- A request is judged by ONE rule: the exact rule for its path if any, else the highest-priority prefix or
  segment-wildcard rule that matches (`_priority`). No matching rule means denied.
- The `root` policy allows everything and must be the only policy of its ACL.
"""

import copy
import dataclasses
import functools
import json
import math
import re
import threading
from collections.abc import Iterable, Mapping

import hcl.parser

from vaultd.sdk.errors import InternalError, InvalidRequest, PermissionDenied

from .builtin_policies import DEFAULT_POLICY_HCL, RESPONSE_WRAPPING_POLICY_HCL  # noqa: F401 - re-exported

capability_names = frozenset({"create", "read", "update", "patch", "delete", "list", "sudo", "deny"})
operations = frozenset({"create", "read", "update", "patch", "delete", "list", "help"})
# Vault checks parameters on reads too: query parameters arrive as request data.
parameter_checked_operations = frozenset({"create", "read", "update", "patch"})
# The pre-0.5 `policy = "read"` shorthand, still accepted by Vault's parser.
legacy_policy_capabilities = {
    "deny": ("deny",),
    "read": ("read", "list"),
    "write": ("create", "read", "update", "delete", "list"),
    "sudo": ("create", "read", "update", "delete", "list", "sudo"),
}
policy_keys = frozenset({"name", "path"})
# `mfa_methods` and `control_group` are Enterprise features: Vault OSS parses them and never enforces them.
path_rule_keys = frozenset({"comment", "policy", "capabilities", "allowed_parameters", "denied_parameters",
                            "required_parameters", "min_wrapping_ttl", "max_wrapping_ttl", "mfa_methods",
                            "control_group"})
root_policy_name = "root"
default_policy_name = "default"
response_wrapping_policy_name = "response-wrapping"
immutable_policy_names = frozenset({root_policy_name, response_wrapping_policy_name, "control-group"})
non_assignable_policy_names = frozenset({response_wrapping_policy_name, "control-group"})

assert {capability for granted in legacy_policy_capabilities.values() for capability in granted} <= capability_names
assert parameter_checked_operations < operations



@dataclasses.dataclass
class Permissions:
    """What one rule grants. invariant: "deny" in capabilities implies capabilities == {"deny"}."""

    capabilities: frozenset[str] = frozenset()
    allowed_parameters: dict[str, list] | None = None  # None: unconstrained. Keys lowercased; [] = any value
    denied_parameters: dict[str, list] | None = None
    required_parameters: list[str] = dataclasses.field(default_factory=list)
    min_wrapping_ttl_seconds: float = 0  # 0: no bound
    max_wrapping_ttl_seconds: float = 0


@dataclasses.dataclass(frozen=True)
class PathRules:
    path: str  # the pattern as written; in a templated policy it may hold `{{identity...}}` placeholders
    permissions: Permissions


@dataclasses.dataclass(frozen=True)
class Policy:
    name: str
    raw: str
    paths: tuple[PathRules, ...] = ()
    templated: bool = False


ROOT_POLICY = Policy(name=root_policy_name, raw="")


class _PolicyError(Exception):
    """A flaw in a policy's text; `parse_policy` reports it as Vault's `failed to parse policy: ...`."""


def normalize_policy_name(name: str) -> str:
    """Vault stores and looks up policy names trimmed and lowercased."""
    return name.strip().lower()


def check_policy_writable(name: str) -> None:
    name = normalize_policy_name(name)
    if name in immutable_policy_names:
        raise InvalidRequest(f'cannot update "{name}" policy')


def check_policy_deletable(name: str) -> None:
    name = normalize_policy_name(name)
    if name in immutable_policy_names:
        raise InvalidRequest(f'cannot delete "{name}" policy')
    if name == default_policy_name:
        raise InvalidRequest("cannot delete default policy")


def parse_policy(name: str, text: str) -> Policy:
    """HCL or JSON policy text -> Policy named `name` (normalised). InvalidRequest names the first flaw."""
    try:
        paths = []
        for key, value in _top_level_items(text):
            if key not in policy_keys:
                raise _PolicyError(f"invalid key {_quote(key)}")
            if key == "path":
                paths.extend(_parse_path_rules(pattern, body) for pattern, body in _path_blocks(value))
        templated = any([_is_templated(rules.path) for rules in paths])
    except _PolicyError as error:
        raise InvalidRequest(f"failed to parse policy: {error}") from None
    return Policy(normalize_policy_name(name), text, tuple(paths), templated)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # Go's %q, near enough for error messages


def _top_level_items(text: str) -> list[tuple[str, object]]:
    if text.lstrip().startswith("{"):  # JSON, detected the way HCL detects it
        try:
            return list(json.loads(text, object_pairs_hook=_reject_duplicate_keys).items())
        except ValueError as error:
            raise _PolicyError(str(error)) from None
    with _hcl_parser_lock:
        parser = _hcl_parser()
        parser.top_level_items = []
        try:
            parser.parse(text)
        except ValueError as error:
            raise _PolicyError(str(error)) from None
        return parser.top_level_items


_hcl_parser_lock = threading.Lock()


@functools.cache
def _hcl_parser() -> hcl.parser.HclParser:
    """One pyhcl parser, reused: building its tables takes ~50 ms, a parse ~1 ms. pyhcl folds repeated
    top-level blocks into one dict, the later block's keys winning, which could lose a `deny`; Vault keeps every
    block and merges them like rules from separate policies, so this parser also keeps the top level's items."""
    parser = hcl.parser.HclParser()
    fold = parser.objectlist_flat

    def capture(pairs, replace):
        if replace:  # only the top level folds with replace=True; folding mutates the pairs, so copy first
            parser.top_level_items = copy.deepcopy(pairs)
        return fold(pairs, replace)

    parser.objectlist_flat = capture
    return parser


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    # Python's json keeps only the last of duplicate keys, which could drop a `deny`; refuse them instead.
    keys = [key for key, _ in pairs]
    for index, key in enumerate(keys):
        if key in keys[:index]:
            raise _PolicyError(f"duplicate key {_quote(key)}")
    return dict(pairs)


def _path_blocks(value: object) -> list[tuple[str, object]]:
    """`path` as HCL gives it ({pattern: body}) or as JSON may ([{pattern: body}, ...])."""
    blocks = value if isinstance(value, list) else [value]
    if not all(isinstance(block, dict) and all(isinstance(key, str) for key in block) for block in blocks):
        raise _PolicyError('"path" must be a block: path "<pattern>" { ... }')
    return [(pattern, body) for block in blocks for pattern, body in block.items()]


def _parse_path_rules(pattern: str, body: object) -> PathRules:
    where = f"path {_quote(pattern)}"
    if not isinstance(body, dict):
        raise _PolicyError(f"{where}: expected a block of settings")
    for key in body:
        if key not in path_rule_keys:
            raise _PolicyError(f"{where}: invalid key {_quote(key)}")
    _file_pattern(pattern)  # rejects '+*' early
    capabilities = _string_list(body.get("capabilities"), f"{where}: capabilities")
    legacy = body.get("policy")
    if legacy is not None:
        if not isinstance(legacy, str) or legacy not in legacy_policy_capabilities:
            raise _PolicyError(f"{where}: invalid policy {_quote(str(legacy))}")
        capabilities = ["deny"] if legacy == "deny" else [*capabilities, *legacy_policy_capabilities[legacy]]
    for capability in capabilities:
        if capability == "deny":  # like Vault: deny stops the parse of this block; nothing after it matters
            return PathRules(pattern, Permissions(frozenset({"deny"})))
        if capability not in capability_names:
            raise _PolicyError(f"{where}: invalid capability {_quote(capability)}")
    permissions = Permissions(
        capabilities=frozenset(capabilities),
        allowed_parameters=_parameter_map(body.get("allowed_parameters"), f"{where}: allowed_parameters"),
        denied_parameters=_parameter_map(body.get("denied_parameters"), f"{where}: denied_parameters"),
        required_parameters=_string_list(body.get("required_parameters"), f"{where}: required_parameters"),
        min_wrapping_ttl_seconds=_duration_seconds(body.get("min_wrapping_ttl"), "min_wrapping_ttl"),
        max_wrapping_ttl_seconds=_duration_seconds(body.get("max_wrapping_ttl"), "max_wrapping_ttl"),
    )
    low, high = permissions.min_wrapping_ttl_seconds, permissions.max_wrapping_ttl_seconds
    if low and high and high < low:
        raise _PolicyError("max_wrapping_ttl cannot be less than min_wrapping_ttl")
    return PathRules(pattern, permissions)


def _string_list(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _PolicyError(f"{where}: expected a list of strings")
    return list(value)


def _parameter_map(value: object, where: str) -> dict[str, list] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise _PolicyError(f"{where}: expected a map of parameter names to lists of values")
    for key, values in value.items():
        if not isinstance(values, list):
            raise _PolicyError(f"{where}: the values of {_quote(key)} must be a list")
    return {key.lower(): list(values) for key, values in value.items()}


_go_duration = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_go_duration_term = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_unit_seconds = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
duration_seconds_max = (2**63 - 1) / 1e9  # Go's time.Duration holds about 292 years


def _duration_seconds(value: object, field: str) -> float:
    """go-secure-stdlib's ParseDurationSecond: seconds as a number or digits, "<n>d", or a Go duration."""
    if value is None or value == "":
        return 0
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+d?", value):
        seconds = int(value.removesuffix("d")) * (86400 if value.endswith("d") else 1)
    elif isinstance(value, str) and _go_duration.fullmatch(value):
        seconds = sum(float(number) * _unit_seconds[unit] for number, unit in _go_duration_term.findall(value))
        seconds = -seconds if value.startswith("-") else seconds
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = int(value)  # Go converts a number to a Duration of whole seconds
    else:
        seconds = math.inf
    if not abs(seconds) <= duration_seconds_max:
        raise _PolicyError(f"error parsing {field}: time: invalid duration {_quote(str(value))}")
    return seconds


def _is_templated(path: str) -> bool:
    """Vault's identity-template validity check: `{{` and `}}` must pair up, and `}}` never comes first."""
    head, *pieces = path.split("{{")
    if "}}" in head or any(len(piece.split("}}")) != 2 for piece in pieces):
        raise _PolicyError("failed to validate policy templating: unbalanced templating characters")
    return bool(pieces)


def _render_template(path: str, values: Mapping[str, str]) -> str | None:
    """`path` with each `{{name}}` replaced from `values`; None when a name has no value (Vault skips the rule)."""
    head, *pieces = path.split("{{")
    rendered = [head]
    for piece in pieces:
        name, rest = piece.split("}}")
        if name.strip() not in values:
            return None
        rendered += [values[name.strip()], rest]
    return "".join(rendered)


def _file_pattern(path: str) -> tuple[str, str]:
    """(kind, key): where Vault files a rule, kind being "exact", "prefix" or "segment"."""
    path = path.removeprefix("/")  # policy paths start after the API's `/v1/`
    if "+*" in path:
        raise _PolicyError(f"path {_quote(path)}: invalid use of wildcards ('+*' is forbidden)")
    if path == "+" or "/+" in path or path.startswith("+/"):
        return "segment", path  # a trailing `*` stays part of the key; matching handles it
    if path.endswith("*"):
        return "prefix", path[:-1]
    return "exact", path


def _merge(existing: Permissions, incoming: Permissions) -> None:
    """Fold a rule from a later policy into the ACL's rule for the same pattern, as Vault's NewACL does."""
    if "deny" in existing.capabilities:
        return
    if "deny" in incoming.capabilities:
        existing.capabilities = incoming.capabilities
        existing.allowed_parameters = existing.denied_parameters = None
        return
    existing.capabilities |= incoming.capabilities
    # Vault keeps the lesser of two non-zero bounds, for the minimum as for the maximum.
    for bound in ("min_wrapping_ttl_seconds", "max_wrapping_ttl_seconds"):
        ours, theirs = getattr(existing, bound), getattr(incoming, bound)
        if theirs > 0 and (ours == 0 or theirs < ours):
            setattr(existing, bound, theirs)
    existing.allowed_parameters = _merge_parameters(existing.allowed_parameters, incoming.allowed_parameters)
    existing.denied_parameters = _merge_parameters(existing.denied_parameters, incoming.denied_parameters)
    existing.required_parameters += [
        name for name in incoming.required_parameters if name not in existing.required_parameters
    ]


def _merge_parameters(existing: dict[str, list] | None, incoming: dict[str, list] | None) -> dict[str, list] | None:
    # Note the Vault quirk kept here: a policy that constrains parameters narrows a merged rule whose other
    # policy left them unconstrained, since "no map" is not kept as "anything".
    if not incoming:
        return existing
    if existing is None:
        return incoming
    for name, values in incoming.items():
        # An empty list (any value) on either side wins; otherwise the value lists are concatenated.
        existing[name] = [] if not values or existing.get(name) == [] else values + existing.get(name, [])
    return existing


def _globbed_strings_match(item: str, value: str) -> bool:
    """go-secure-stdlib strutil.GlobbedStringsMatch. A lone "*" is shorter than 2 and so matches only "*"."""
    leading, trailing = len(item) >= 2 and item.startswith("*"), len(item) >= 2 and item.endswith("*")
    core = item[leading : len(item) - trailing]
    if leading and trailing:
        return core in value
    return value.endswith(core) if leading else value.startswith(core) if trailing else value == item


def _value_in_parameter_list(value: object, listed: list) -> bool:
    # Vault 1.15 compares a request value whole (1.21 made list values match element by element).
    if not listed:
        return True  # [] means any value
    for item in listed:
        if item is None or value is None:
            matched = item is value
        elif isinstance(item, str) and isinstance(value, str):
            matched = _globbed_strings_match(item, value)
        else:  # reflect.DeepEqual: same type and equal
            matched = type(item) is type(value) and item == value
        if matched:
            return True
    return False


def _parameters_allowed(permissions: Permissions, data: Mapping[str, object]) -> bool:
    # Required names are lowercased while the request's keys are not, as in Vault.
    if any(name.lower() not in data for name in permissions.required_parameters):
        return False
    if not data:
        return True
    denied = permissions.denied_parameters or {}
    if "*" in denied:  # denies every non-empty request, whatever allowed_parameters says
        return False
    for key, value in data.items():
        if key.lower() in denied and _value_in_parameter_list(value, denied[key.lower()]):
            return False
    allowed = permissions.allowed_parameters or {}
    if not allowed or allowed.keys() == {"*"}:
        return True
    for key, value in data.items():
        listed = allowed.get(key.lower())
        if listed is None and "*" not in allowed:
            return False
        if listed is not None and not _value_in_parameter_list(value, listed):
            return False
    return True


class ACL:
    """The merged rules of one token's policies. Built from parsed policies; never changes afterwards."""

    def __init__(self, policies: Iterable[Policy], template_values: Mapping[str, str] | None = None):
        """`template_values` fill `{{identity.entity.id}}`-style placeholders (names without the braces);
        a templated rule whose placeholders have no value is left out, as Vault does for tokens without one."""
        policies = list(policies)
        self.root = any(policy.name == root_policy_name for policy in policies)
        if self.root and len(policies) != 1:
            raise InternalError("other policies present along with root")
        self.exact_rules: dict[str, Permissions] = {}
        self.prefix_rules: dict[str, Permissions] = {}  # keyed by the pattern without its trailing `*`
        self.segment_wildcard_rules: dict[str, Permissions] = {}  # keyed by the whole pattern
        tables = {"exact": self.exact_rules, "prefix": self.prefix_rules, "segment": self.segment_wildcard_rules}
        for policy in policies:
            for rules in policy.paths:
                path = _render_template(rules.path, template_values or {}) if policy.templated else rules.path
                if path is None:
                    continue
                try:
                    kind, key = _file_pattern(path)
                except _PolicyError:  # a template value produced `+*`; Vault drops such a rule too
                    continue
                table, incoming = tables[kind], copy.deepcopy(rules.permissions)
                if key in table:
                    _merge(table[key], incoming)
                else:
                    table[key] = incoming

    def capabilities(self, path: str) -> list[str]:
        """What sys/capabilities-self reports: sorted capabilities, ["root"], or ["deny"] for none."""
        if self.root:
            return ["root"]
        permissions = self._permissions_for(path, "list")  # Vault looks up as a list, for its trailing-/ fallback
        if permissions is None or not permissions.capabilities:
            return ["deny"]
        return sorted(permissions.capabilities)

    def check(self, path: str, operation: str, data: Mapping[str, object] | None = None, *,
              sudo_required: bool = False, wrapping_ttl_seconds: float | None = None) -> None:
        """Raise PermissionDenied unless the rule for `path` allows `operation` with these request `data`
        (and `sudo`, for the paths a backend marks root-protected). `wrapping_ttl_seconds` is the requested
        response-wrapping TTL, None when the request does not ask for wrapping."""
        assert operation in operations, operation
        if self.root or operation == "help":
            return
        permissions = self._permissions_for(path, operation)
        if (
            permissions is None
            or operation not in permissions.capabilities
            or not _wrapping_allowed(permissions, wrapping_ttl_seconds)
            or (operation in parameter_checked_operations and not _parameters_allowed(permissions, data or {}))
            or (sudo_required and "sudo" not in permissions.capabilities)
        ):
            raise PermissionDenied()

    def _permissions_for(self, path: str, operation: str) -> Permissions | None:
        """The one rule that decides: exact first, else the best non-exact match. A list of `a/b/` may use
        the rules for `a/b`, since clients list with and without the trailing slash."""
        path = path.lstrip("/")
        if path in self.exact_rules:
            return self.exact_rules[path]
        if operation == "list":
            trimmed = path.removesuffix("/")
            if trimmed in self.exact_rules:
                return self.exact_rules[trimmed]
            if trimmed != path and (permissions := self._non_exact_permissions(trimmed)) is not None:
                return permissions
        return self._non_exact_permissions(path)

    def _non_exact_permissions(self, path: str) -> Permissions | None:
        candidates = []
        prefix = max((key for key in self.prefix_rules if path.startswith(key)), key=len, default=None)
        if prefix is not None:
            candidates.append((_priority(prefix, prefix, True, 0), self.prefix_rules[prefix]))
        parts = path.split("/")
        for pattern, permissions in self.segment_wildcard_rules.items():
            wildcards = _segment_wildcards_matching(pattern, parts)
            if wildcards is not None:
                stem = pattern.removesuffix("*")
                candidates.append((_priority(stem, pattern[: pattern.index("+")], pattern.endswith("*"), wildcards),
                                   permissions))
        return max(candidates, key=lambda candidate: candidate[0])[1] if candidates else None


def _segment_wildcards_matching(pattern: str, parts: list[str]) -> int | None:
    """How many `+` segments of `pattern` matched the path `parts`, or None if it does not match."""
    is_prefix = pattern.endswith("*")
    pattern_parts = pattern.removesuffix("*").split("/")
    if len(parts) < len(pattern_parts) or (not is_prefix and len(parts) != len(pattern_parts)):
        return None
    wildcards = 0
    for index, pattern_part in enumerate(pattern_parts):
        if pattern_part == "+":
            wildcards += 1
        elif pattern_part != parts[index] and not (
            is_prefix and index == len(pattern_parts) - 1 and parts[index].startswith(pattern_part)
        ):
            return None
    return wildcards


def _priority(stem: str, before_first_wildcard: str, is_prefix: bool, wildcards: int) -> tuple:
    """Vault's priority among matching non-exact rules; the greatest wins (lengths in bytes, as Go counts):
    a later first `+` or `*`, then not ending in `*`, then fewer `+` segments, then a longer pattern, then
    the lexicographically greater pattern."""
    return len(before_first_wildcard.encode()), not is_prefix, -wildcards, len(stem.encode()), stem


def _wrapping_allowed(permissions: Permissions, wrapping_ttl_seconds: float | None) -> bool:
    low, high = permissions.min_wrapping_ttl_seconds, permissions.max_wrapping_ttl_seconds
    if high > 0 and (wrapping_ttl_seconds is None or wrapping_ttl_seconds > high):
        return False
    if low > 0 and (wrapping_ttl_seconds is None or wrapping_ttl_seconds < low):
        return False
    return not (low and high and high < low)  # possible after merging, though not within one block
