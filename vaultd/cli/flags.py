"""Go-style flags as the Vault CLI takes them: `-name=value`, `-name value`, `--name=value`, `-bool`,
`-bool=false`. A lone `-` is an argument (stdin); `--` ends the flags. Unlike Go's flag package, flags may
also follow the arguments, so `vaultd kv get secret/foo -format=json` works.

Kinds: `string`, `int`, `bool`, `list` (repeatable and comma-separated: `-policy=a,b -policy=c`) and `map`
(repeatable `-custom-metadata=k=v`).
"""

import dataclasses
from collections.abc import Mapping

from .errors import UsageError

KINDS = ("string", "int", "bool", "list", "map")
_true_words = ("1", "t", "true", "yes")
_false_words = ("0", "f", "false", "no")


@dataclasses.dataclass(frozen=True)
class Flag:
    kind: str
    help: str
    default: object = None

    def __post_init__(self):
        assert self.kind in KINDS, self.kind


class Values:
    """Parsed flag values by name; `given` says whether the user set a flag rather than its default."""

    def __init__(self, spec: Mapping[str, Flag]):
        self._spec = spec
        self._values: dict[str, object] = {}

    def __getitem__(self, name: str):
        assert name in self._spec, f"flag -{name} is not declared"
        if name in self._values:
            return self._values[name]
        default = self._spec[name].default
        return list(default or ()) if self._spec[name].kind == "list" else default

    def given(self, name: str) -> bool:
        assert name in self._spec, f"flag -{name} is not declared"
        return name in self._values

    def set(self, name: str, text: str) -> None:
        flag = self._spec[name]
        if flag.kind == "list":
            items = [item.strip() for item in text.split(",") if item.strip()]
            self._values[name] = [*self._values.get(name, []), *items]
        elif flag.kind == "map":
            key, equals, value = text.partition("=")
            if not equals or not key:
                raise UsageError(f'invalid value "{text}" for flag -{name}: want key=value')
            self._values[name] = {**self._values.get(name, {}), key: value}
        elif flag.kind == "int":
            try:
                self._values[name] = int(text)
            except ValueError:
                raise UsageError(f'invalid value "{text}" for flag -{name}: not an integer') from None
        elif flag.kind == "bool":
            self._values[name] = _parse_bool(name, text)
        else:
            self._values[name] = text


def parse(argv: list[str], spec: Mapping[str, Flag]) -> tuple[Values, list[str]]:
    """Split `argv` into flag values and positional arguments."""
    values, arguments = Values(spec), []
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--":
            arguments.extend(argv[index:])
            break
        if not word.startswith("-") or word == "-":
            arguments.append(word)
            continue
        name, equals, text = word.lstrip("-").partition("=")
        if name not in spec:
            raise UsageError(f"flag provided but not defined: -{name}")
        if not equals and spec[name].kind == "bool":
            text = "true"
        elif not equals:
            if index == len(argv):
                raise UsageError(f"flag needs an argument: -{name}")
            text = argv[index]
            index += 1
        values.set(name, text)
    return values, arguments


def parse_key_values(words: list[str], what: str) -> dict[str, str]:
    """`k=v` words, as `audit enable file file_path=...` takes them."""
    pairs = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise UsageError(f"invalid {what} {word!r}: want key=value")
        pairs[key] = value
    return pairs


def _parse_bool(name: str, text: str) -> bool:
    if text.lower() in _true_words:
        return True
    if text.lower() in _false_words:
        return False
    raise UsageError(f'invalid boolean value "{text}" for flag -{name}')
