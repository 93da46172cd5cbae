"""Rendering as the Vault CLI does: `Key / Value` tables glued by four spaces, Go-style values (`[a b]`,
`map[k:v]`, `<nil>`, `n/a` for an empty string), TTL-ish fields as durations (`768h`, `1m30s`), `== Title ==`
headers, and JSON indented by two spaces."""

import json
import re

column_glue = "    "


def to_json(value) -> str:
    return json.dumps(value, indent=2)


def go_value(value) -> str:
    """A value as Go's `%v` prints it in Vault's tables."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "n/a"
    if isinstance(value, list):
        return "[" + " ".join(_inner(item) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{_inner(value[key])}" for key in sorted(value)) + "]"
    return str(value)


def _inner(value) -> str:
    return value if isinstance(value, str) else go_value(value)


def quoted_list(values) -> str:
    """Go's `%q` of a []string: `["default" "web"]`."""
    return "[" + " ".join(json.dumps(str(value)) for value in values or []) + "]"


def human_duration(seconds) -> str:
    """Vault's humanDuration: Go's Duration.String() without the zero minutes and seconds (768h, 1h30s)."""
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return go_value(seconds)
    if seconds == 0:
        return "0s"
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s" if minutes else f"{secs}s")
    if text.endswith("m0s"):
        text = text[:-2]
    if "h0m" in text:
        text = text.replace("h0m", "h", 1)
    return sign + text


def is_ttl_field(key: str) -> bool:
    return key in ("ttl", "period") or key.endswith(("_ttl", "_period"))


def columns(rows: list[list[str]]) -> str:
    """Left-aligned columns; the first row is the header and is underlined with dashes."""
    if not rows:
        return ""
    return aligned([rows[0], ["-" * len(cell) for cell in rows[0]], *rows[1:]])


def aligned(rows: list[list[str]]) -> str:
    """Left-aligned columns without a header, as Vault's columnOutput of `Label | value` lines."""
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))] if rows else []
    return "\n".join(column_glue.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def key_value_table(pairs: list[tuple[str, str]]) -> str:
    return columns([["Key", "Value"], *[[key, value] for key, value in pairs]])


def data_table(data: dict) -> str:
    """A secret's data, sorted by key, as Vault's OutputData prints it."""
    pairs = []
    for key in sorted(data):
        value = data[key]
        pairs.append((key, human_duration(value) if is_ttl_field(key) else go_value(value)))
    return key_value_table(pairs)


def pad_equal_signs(title: str, width: int) -> str:
    """Vault's padEqualSigns: `== Title ==` about `width` characters wide."""
    signs = width - (len(title) + 2)
    if signs <= 0:
        signs = 4
    if signs % 2:
        signs += 1
    return f"{'=' * (signs // 2)} {title} {'=' * (signs // 2)}"


def header_for(title: str, data: dict) -> str:
    """Vault's getHeaderForMap: as wide as a table of `data` (longest key, the glue, len("Value"))."""
    longest = max((len(key) for key in data), default=0)
    return pad_equal_signs(title, longest + len(column_glue) + len("Value"))


def path_header(title: str, path: str) -> str:
    return f"{pad_equal_signs(title, len(path))}\n{path}\n"


def secret_table(body: dict) -> str:
    """Vault's table output of a whole response: lease, auth and data fields."""
    pairs: list[tuple[str, str]] = []
    if body.get("lease_duration"):
        if body.get("lease_id"):
            pairs += [("lease_id", body["lease_id"]), ("lease_duration", human_duration(body["lease_duration"])),
                      ("lease_renewable", go_value(bool(body.get("renewable"))))]
        else:
            pairs.append(("refresh_interval", human_duration(body["lease_duration"])))
    auth = body.get("auth")
    if auth:
        pairs += auth_pairs(auth)
    wrap_info = body.get("wrap_info")
    if wrap_info:
        pairs += wrap_pairs(wrap_info)
    data = body.get("data") or {}
    for key in sorted(data):
        value = data[key]
        pairs.append((key, human_duration(value) if is_ttl_field(key) else go_value(value)))
    return key_value_table(pairs)


def auth_pairs(auth: dict) -> list[tuple[str, str]]:
    duration = auth.get("lease_duration") or 0
    pairs = [
        ("token", auth.get("client_token") or "n/a"),
        ("token_accessor", auth.get("accessor") or "n/a"),
        ("token_duration", human_duration(duration) if duration else "∞"),
        ("token_renewable", go_value(bool(auth.get("renewable")))),
        ("token_policies", quoted_list(auth.get("token_policies"))),
        ("identity_policies", quoted_list(auth.get("identity_policies"))),
        ("policies", quoted_list(auth.get("policies"))),
    ]
    for key in sorted(auth.get("metadata") or {}):
        pairs.append((f"token_meta_{key}", go_value(auth["metadata"][key])))
    return pairs


def wrap_pairs(wrap_info: dict) -> list[tuple[str, str]]:
    """A wrapped response's rows. The trailing colons are Vault's own: scripts that parse its table expect them."""
    pairs = [
        ("wrapping_token:", wrap_info.get("token") or "n/a"),
        ("wrapping_accessor:", wrap_info.get("accessor") or "n/a"),
        ("wrapping_token_ttl:", human_duration(wrap_info.get("ttl") or 0)),
        ("wrapping_token_creation_time:", go_time(wrap_info.get("creation_time") or "")),
        ("wrapping_token_creation_path:", wrap_info.get("creation_path") or "n/a"),
    ]
    if wrap_info.get("wrapped_accessor"):
        pairs.append(("wrapped_accessor:", wrap_info["wrapped_accessor"]))
    return pairs


_rfc3339 = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


def go_time(text: str) -> str:
    """An RFC 3339 time as Go's time.Time.String() prints it: `2024-05-01 12:00:00.1234 +0000 UTC`."""
    match = _rfc3339.fullmatch(text)
    if match is None:
        return go_value(text)
    date, clock, fraction, zone = match.groups()
    fraction = (fraction or "").rstrip("0")
    offset = "+0000 UTC" if zone == "Z" else f"{zone.replace(':', '')} {zone.replace(':', '')}"
    return f"{date} {clock}{'.' + fraction if fraction else ''} {offset}"


def secret_field(body: dict, field: str):
    """The value `-field=NAME` picks from a response, as Vault's RawField: the token's fields of an `auth`
    block, the wrapping token's of a `wrap_info`, else the lease's; any other name is a `data` key. None: absent."""
    auth, wrap_info = body.get("auth"), body.get("wrap_info")
    if auth:
        named = {"token": auth.get("client_token"), "token_accessor": auth.get("accessor"),
                 "token_duration": auth.get("lease_duration"), "token_renewable": auth.get("renewable"),
                 "token_policies": auth.get("token_policies"), "identity_policies": auth.get("identity_policies"),
                 "policies": auth.get("policies")}
    elif wrap_info:
        named = {"wrapping_token": wrap_info.get("token"), "wrapping_accessor": wrap_info.get("accessor"),
                 "wrapping_token_ttl": wrap_info.get("ttl"), "wrapping_token_creation_time":
                 wrap_info.get("creation_time"), "wrapping_token_creation_path": wrap_info.get("creation_path"),
                 "wrapped_accessor": wrap_info.get("wrapped_accessor")}
    else:
        named = {"refresh_interval": body.get("lease_duration"), "lease_id": body.get("lease_id"),
                 "lease_duration": body.get("lease_duration"), "lease_renewable": body.get("renewable"),
                 "request_id": body.get("request_id")}
    if field in named:
        return named[field]
    data = body.get("data")
    return data.get(field) if isinstance(data, dict) else None


def key_list(keys: list) -> str:
    """A LIST answer's keys as Vault's table prints them."""
    return columns([["Keys"], *[[str(key)] for key in keys]])


def warnings_text(body: dict | None) -> str:
    """Vault's warning block, for stderr; empty when the response has none."""
    warnings = (body or {}).get("warnings") or []
    if not warnings:
        return ""
    items = "\n\n".join(f"  * {warning}" for warning in warnings)
    return f"WARNING! The following warnings were returned from Vault:\n\n{items}\n"


def raw_field(value) -> str:
    """A single field as `-field=` prints it: strings bare, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)
