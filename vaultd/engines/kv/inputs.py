"""What KV requests carry beyond the SDK's field types, parsed and checked as Vault does: `options.cas`,
version lists, custom_metadata, signed durations; and the two transformations of secret data, JSON merge
patch and subkeys. Every failure raises InvalidRequest before a handler writes anything."""

import json

from vaultd.sdk.backend import parse_value
from vaultd.sdk.errors import CheckAndSetMismatch, InvalidRequest
from vaultd.sdk.path import Field, FieldType

# Vault's bounds on custom_metadata (path_metadata.go); lengths are in UTF-8 bytes, as Go's len() counts.
custom_metadata_keys_max = 64
custom_metadata_key_bytes_max = 128
custom_metadata_value_bytes_max = 512
# Vault's maxSubkeysDepth: maps nested deeper come back as null, so a subkeys read never leaks a value.
subkeys_depth_max = 100

assert 0 < custom_metadata_key_bytes_max <= custom_metadata_value_bytes_max
assert subkeys_depth_max > 0

custom_metadata_failed = "custom_metadata validation failed"
_integer_field = Field(FieldType.INT)
_duration_field = Field(FieldType.DURATION)


def check_and_set(options: dict, required: bool, current_version: int) -> None:
    """Vault's validateCheckAndSetOption: `cas` must equal the current version (0: the secret must not exist
    yet), and must be given when the mount or the secret sets cas_required."""
    if "cas" in options:
        if _cas(options["cas"]) != current_version:
            raise CheckAndSetMismatch("check-and-set parameter did not match the current version")
    elif required:
        raise InvalidRequest("check-and-set parameter required for this call")


def _cas(value: object) -> int:
    """mapstructure.WeakDecode into an int, as Vault decodes `cas`: integers, numeric strings, booleans;
    null leaves it 0."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    try:
        return parse_value("cas", _integer_field, value)
    except InvalidRequest:
        raise InvalidRequest("error parsing check-and-set parameter") from None


def versions(value: object) -> list[int]:
    """Vault's TypeCommaIntSlice: a list of integers, one integer, or "1,2,3". Repeats are dropped."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    try:
        numbers = [parse_value("versions", _integer_field, item) for item in items if item != ""]
    except InvalidRequest:
        raise InvalidRequest(f"error converting input {value!r} for field 'versions'") from None
    return list(dict.fromkeys(numbers))


def non_negative(name: str, value: int) -> int:
    """max_versions and a secret's delete_version_after are unsigned in Vault."""
    if value < 0:
        raise InvalidRequest(f"error converting input {value!r} for field {name!r}: cannot provide negative value")
    return value


def signed_duration(name: str, value: object) -> int:
    """Vault's TypeSignedDurationSecond: a duration that may be negative, e.g. "-1s" or -1."""
    if isinstance(value, str) and value.strip().startswith("-"):
        return -parse_value(name, _duration_field, value.strip()[1:])
    return parse_value(name, _duration_field, value)


def custom_metadata(raw: dict, patching: bool) -> dict:
    """Vault's parseCustomMetadata then validateCustomMetadata. Values are weakly decoded to strings. A null
    becomes "" on a write (and then fails the length check); on a patch it stays None, which the merge patch
    turns into removing that key."""
    parsed = {}
    for key, value in raw.items():
        parsed[key] = None if value is None and patching else _weak_string(value)
    problems = _custom_metadata_problems({key: value for key, value in parsed.items() if value is not None})
    if problems:
        raise InvalidRequest(_multierror(problems))
    return parsed


def _weak_string(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"  # mapstructure's weak bool-to-string
    if isinstance(value, str | int | float):
        return str(value)
    go_type = "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"
    raise InvalidRequest(
        f"{custom_metadata_failed}: '' expected type 'string', got unconvertible type '{go_type}', "
        f"value: {json.dumps(value)!r}"
    )


def _custom_metadata_problems(values: dict[str, str]) -> list[str]:
    if len(values) > custom_metadata_keys_max:
        # Vault stops here rather than check every key of an oversized payload
        return [f"{custom_metadata_failed}: payload must contain at most {custom_metadata_keys_max} keys, "
                f"provided {len(values)}"]
    problems = []
    for key, value in values.items():
        quoted = json.dumps(key, ensure_ascii=False)
        key_bytes, value_bytes = _utf8_length(key), _utf8_length(value)
        if not 0 < key_bytes <= custom_metadata_key_bytes_max:
            problems.append(f"{custom_metadata_failed}: length of key {quoted} is {key_bytes} but must be "
                            f"0 < len(key) <= {custom_metadata_key_bytes_max}")
        if not 0 < value_bytes <= custom_metadata_value_bytes_max:
            problems.append(f"{custom_metadata_failed}: length of value for key {quoted} is {value_bytes} but "
                            f"must be 0 < len(value) <= {custom_metadata_value_bytes_max}")
        if not key.isprintable():
            problems.append(f"{custom_metadata_failed}: key {quoted} ({key}) contains unprintable characters")
        if not value.isprintable():
            problems.append(f"{custom_metadata_failed}: value for key {quoted} contains unprintable characters")
    return problems


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _multierror(problems: list[str]) -> str:
    """go-multierror's format, which Vault returns verbatim."""
    heading = "1 error occurred:" if len(problems) == 1 else f"{len(problems)} errors occurred:"
    return heading + "".join(f"\n\t* {problem}" for problem in problems) + "\n\n"


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def subkeys(data: dict, depth: int) -> dict:
    """Vault's removeValues: the same nesting with every leaf (a non-map or an empty map) replaced by null.
    Maps at `depth` (0: subkeys_depth_max) count as leaves."""
    limit = depth or subkeys_depth_max

    def walk(node: dict, level: int) -> dict:
        return {
            key: walk(value, level + 1) if isinstance(value, dict) and value and level < limit else None
            for key, value in node.items()
        }

    return walk(data, 1)
