"""What transit requests carry beyond the SDK's field types, decoded as Vault's Go code decodes them so that
clients see Vault's messages: base64 (Go's encoding/base64, with its error offsets), integers (strconv.Atoi),
`batch_input` items (Vault's decodeBatchRequestItems) and the `vault:v<N>:` prefix of ciphertexts,
signatures and HMACs. Every failure raises InvalidRequest (or ValueError, for the caller to word)."""

import binascii
import json
import re

from vaultd.sdk.errors import InvalidRequest

version_prefix = "vault:v"  # keysutil's DefaultVersionTemplate "vault:v{{version}}:", split at {{version}}
too_old = "ciphertext or signature version is disallowed by policy (too old)"  # keysutil's ErrTooOld
go_int_bits = 64

_std_alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_url_alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_decode_maps = {
    "std": {byte: value for value, byte in enumerate(_std_alphabet)},
    "rawurl": {byte: value for value, byte in enumerate(_url_alphabet)},
}
_newlines = (ord("\n"), ord("\r"))
_padding = ord("=")
_go_integer = re.compile(r"[+-]?[0-9]+\Z")

assert len(_std_alphabet) == len(_url_alphabet) == 64


def go_base64(text: str, encoding: str = "std") -> bytes:
    """Go's base64.StdEncoding (or RawURLEncoding, unpadded) DecodeString: CR and LF are skipped, trailing
    bits need not be zero. Raises ValueError("illegal base64 data at input byte N") with Go's offset N."""
    data = text.encode("utf-8", "surrogatepass")
    if encoding == "std" and data:
        try:  # canonical padded input decodes the same in Go and in C; the Go-exact path is for the rest
            return binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error:
            pass
    decode_map, padded = _decode_maps[encoding], encoding == "std"
    output = bytearray()
    position, done = 0, False
    while not done:
        position, chunk, done = _quantum(data, position, decode_map, padded)
        output += chunk
    return bytes(output)


def _quantum(data: bytes, position: int, decode_map: dict, padded: bool) -> tuple[int, bytes, bool]:
    """Go's decodeQuantum: up to four symbols into up to three bytes; `done` once the input is used up."""
    values: list[int] = []
    while len(values) < 4:
        if position == len(data):
            if not values:
                return position, b"", True
            if len(values) == 1 or padded:
                raise _corrupt(position - len(values))
            return position, _bytes_of(values), True
        byte = data[position]
        position += 1
        if byte in decode_map:
            values.append(decode_map[byte])
        elif byte in _newlines:
            continue
        elif byte != _padding or not padded or len(values) < 2:
            raise _corrupt(position - 1)
        else:
            return _after_padding(data, position, len(values)), _bytes_of(values), True
    return position, _bytes_of(values), False


def _after_padding(data: bytes, position: int, symbols: int) -> int:
    """Past the first '=': a second one when two symbols came before it, then nothing but newlines."""
    if symbols == 2:
        position = _skip_newlines(data, position)
        if position == len(data):
            raise _corrupt(len(data))
        if data[position] != _padding:
            raise _corrupt(position - 1)
        position += 1
    position = _skip_newlines(data, position)
    if position < len(data):
        raise _corrupt(position)
    return position


def _skip_newlines(data: bytes, position: int) -> int:
    while position < len(data) and data[position] in _newlines:
        position += 1
    return position


def _bytes_of(values: list[int]) -> bytes:
    number = 0
    for value in values + [0] * (4 - len(values)):
        number = number << 6 | value
    return number.to_bytes(3, "big")[: len(values) - 1 if len(values) < 4 else 3]


def _corrupt(offset: int) -> ValueError:
    return ValueError(f"illegal base64 data at input byte {offset}")


def base64_field(value: str, template: str = "{error}") -> bytes:
    """Decode a request's base64 value; a failure is an InvalidRequest worded by `template`."""
    try:
        return go_base64(value)
    except ValueError as error:
        raise InvalidRequest(template.format(error=error)) from None


def go_atoi(text: str) -> int | None:
    """strconv.Atoi: ASCII digits with an optional sign, within an int64; None where Go returns an error."""
    if not _go_integer.match(text):
        return None
    value = int(text)
    return value if -(2 ** (go_int_bits - 1)) <= value < 2 ** (go_int_bits - 1) else None


def go_quote(text: str) -> str:
    """Go's %q for the printable strings these messages quote."""
    return json.dumps(text, ensure_ascii=False)


def go_type(value: object) -> str:
    """Go's %T of a value decoded from a JSON request body (numbers arrive as json.Number)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "json.Number"
    if isinstance(value, str):
        return "string"
    return "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"


def split_versioned(value: str, noun: str, no_prefix: str = "") -> tuple[int, str]:
    """`vault:v<N>:<payload>` into (N, payload), refused with Vault's messages for `noun`."""
    if not value.startswith(version_prefix):
        raise InvalidRequest(no_prefix or f"invalid {noun}: no prefix")
    version_text, separator, payload = value[len(version_prefix) :].partition(":")
    if not separator:
        raise InvalidRequest(f"invalid {noun}: wrong number of fields")
    version = go_atoi(version_text)
    if version is None:
        raise InvalidRequest(f"invalid {noun}: version number could not be decoded")
    return version, payload


def versioned(version: int, payload: str) -> str:
    return f"{version_prefix}{version}:{payload}"


def batch_items(raw: object, strings: tuple[str, ...], integers: tuple[str, ...] = (),
                required: dict[str, str] | None = None) -> list[dict]:
    """Vault's decodeBatchRequestItems: a non-empty list of maps whose `strings` are strings and `integers`
    integers; a null is as good as absent, except for a `required` field, which must be present (its value
    in `required` is the message when it is not). Problems are reported together, as mapstructure does."""
    if not isinstance(raw, list):
        raise InvalidRequest(f"failed to parse batch input: source data must be an array or slice, got {go_type(raw)}")
    if not raw:
        raise InvalidRequest("missing batch input to process")
    problems: list[str] = []
    items = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest(f"failed to parse batch input: [{index}] expected a map, got '{go_type(item)}'")
        items.append(_batch_item(index, item, strings, integers, required or {}, problems))
    if problems:
        points = "\n".join(sorted(f"* {problem}" for problem in problems))
        raise InvalidRequest(f"failed to parse batch input: {len(problems)} error(s) decoding:\n\n{points}")
    return items


def _batch_item(index: int, item: dict, strings: tuple[str, ...], integers: tuple[str, ...],
                required: dict[str, str], problems: list[str]) -> dict:
    parsed: dict = {}
    for name in strings:
        if name not in item:
            if name in required:
                problems.append(f"'[{index}].{name}' {required[name]}")
        elif isinstance(item[name], str):
            parsed[name] = item[name]
        elif item[name] is not None or name in required:
            problems.append(f"'[{index}].{name}' expected type 'string', "
                            f"got unconvertible type '{go_type(item[name])}'")
    for name in integers:
        value = item.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            parsed[name] = value
        elif isinstance(value, float):
            if value.is_integer():
                parsed[name] = int(value)
            else:
                problems.append(f'error decoding json.Number into [{index}].{name}: strconv.ParseInt: parsing '
                                f'"{value}": invalid syntax')
        elif value is not None:
            problems.append(f"'[{index}].{name}' expected type 'int', got unconvertible type '{go_type(value)}'")
    return parsed
