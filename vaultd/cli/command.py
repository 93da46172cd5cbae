"""What every command shares: its declaration (`Command`), the flags every command takes, and the `Context` a
command runs in (parsed flags, arguments, the client, the three streams).

The client is configured as the Vault CLI's: `-address` or `VAULT_ADDR`, `-token` or `VAULT_TOKEN` or the token
helper file `~/.vault-token` (which `vaultd login` writes), `VAULT_CACERT`, `VAULT_SKIP_VERIFY`, `-format` or
`VAULT_FORMAT`, and `-wrap-ttl` for the commands that declare it.
"""

import contextlib
import dataclasses
import getpass
import os
import pathlib
import tempfile
from collections.abc import Callable, Mapping
from typing import TextIO

from . import output
from .client import Client
from .errors import CliError, RequestError, UsageError
from .flags import Flag, Values

default_address = "http://127.0.0.1:8200"
output_formats = ("table", "json")
token_helper_name = ".vault-token"  # in $HOME, as Vault's default token helper keeps it

common_flags = {
    "address": Flag("string", f"the server's address (VAULT_ADDR; default {default_address})"),
    "token": Flag("string", "the token to send (VAULT_TOKEN, else ~/.vault-token)"),
    "format": Flag("string", "output format: table or json (VAULT_FORMAT)"),
    "help": Flag("bool", "show this help"),
    "h": Flag("bool", "show this help"),
}


@dataclasses.dataclass(frozen=True)
class Command:
    """One command: `words` as typed (`kv metadata get`), its argument synopsis, and its own flags."""

    words: str
    arguments: str
    summary: str
    run: Callable[["Context"], int]
    flags: Mapping[str, Flag] = dataclasses.field(default_factory=dict)
    arity: tuple[int, int | None] = (0, 0)  # fewest and most positional arguments; None: no upper bound

    def __post_init__(self):
        assert not set(self.flags) & set(common_flags), f"{self.words} redeclares a common flag"

    def all_flags(self) -> dict[str, Flag]:
        return {**self.flags, **common_flags}

    def usage(self) -> str:
        lines = [f"Usage: vaultd {self.words} [options] {self.arguments}".rstrip(), "", f"  {self.summary}", ""]
        for name, flag in sorted(self.all_flags().items()):
            if name != "h":
                shown = f"-{name}" if flag.kind == "bool" else f"-{name}=<{flag.kind}>"
                lines.append(f"  {shown}\n      {flag.help}")
        return "\n".join(lines)


@dataclasses.dataclass
class Context:
    command: Command
    flags: Values
    args: list[str]
    environ: Mapping[str, str]
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    _client: Client | None = None

    def __post_init__(self):
        low, high = self.command.arity
        if len(self.args) < low:
            raise UsageError(f"Not enough arguments (expected {_expected(low, high)}, got {len(self.args)})")
        if high is not None and len(self.args) > high:
            raise UsageError(f"Too many arguments (expected {_expected(low, high)}, got {len(self.args)})")
        if self.format not in output_formats:
            raise UsageError(f"Invalid output format {self.format!r}: want one of {', '.join(output_formats)}")

    @property
    def format(self) -> str:
        return self.flags["format"] or self.environ.get("VAULT_FORMAT") or "table"

    @property
    def json(self) -> bool:
        return self.format == "json"

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.flags["address"] or self.environ.get("VAULT_ADDR") or default_address,
                self.flags["token"] or self.environ.get("VAULT_TOKEN") or _token_helper_file(self.environ),
                ca_cert=self.environ.get("VAULT_CACERT") or None,
                skip_verify=self.environ.get("VAULT_SKIP_VERIFY", "").lower() in ("1", "t", "true"),
                wrap_ttl=(self.flags["wrap-ttl"] or "") if "wrap-ttl" in self.command.flags else "",
            )
        return self._client

    @contextlib.contextmanager
    def doing(self, action: str):
        """Report a failed request of this step as `Error <action>: <why>`."""
        try:
            yield
        except RequestError as error:
            raise CliError(f"Error {action}: {error}") from error

    def say(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def warn(self, text: str) -> None:
        if text:
            print(text, file=self.stderr)

    def emit(self, body: dict | None, table: Callable[[], str]) -> None:
        """Print a response as JSON or as the table `table()` renders; its warnings go to stderr."""
        self.warn(output.warnings_text(body))
        self.say(output.to_json(body) if self.json else table())

    def key_and_nonce(self, status: dict, nonce_label: str, prompt: str) -> tuple[str, str]:
        """A key share for a quorum operation and its nonce: from the argument (or `-` for stdin) with
        -nonce, else prompted for, with the nonce of the operation in progress shown and used."""
        if self.args and self.args[0] != "-":
            key, nonce = self.args[0], self.flags["nonce"]
        elif self.args:
            key, nonce = self.read_all_stdin("key share"), self.flags["nonce"]
        else:
            nonce = status.get("nonce", "")
            self.warn(f"{nonce_label}: {nonce}")
            key = self.secret_input(prompt)
        if not nonce:
            raise UsageError("Missing nonce value: specify it via the -nonce flag")
        return key.strip(), nonce

    def secret_input(self, prompt: str) -> str:
        """A secret from the terminal without echo, or the first line of stdin when it is not a terminal."""
        text = getpass.getpass(prompt, stream=self.stderr) if self.stdin.isatty() else self.stdin.readline()
        text = text.strip()
        if not text:
            raise UsageError(f"no value given at the prompt {prompt.strip()!r}")
        return text

    def read_all_stdin(self, what: str) -> str:
        text = self.stdin.read()
        if not text.strip():
            raise UsageError(f"no {what} on stdin")
        return text


def _expected(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low}"
    return str(low) if low == high else f"{low}-{high}"


def _token_helper_file(environ: Mapping[str, str]) -> str:
    home = environ.get("HOME")
    if not home:
        return ""
    try:
        return (pathlib.Path(home) / token_helper_name).read_text().strip()
    except OSError:
        return ""


def store_token(environ: Mapping[str, str], token: str) -> pathlib.Path:
    """Write `$HOME/.vault-token` for later commands: mode 0600 from the start, and replaced whole (a temporary
    file renamed over it), so no reader sees a partial token and no other user can read it. Raises OSError."""
    home = environ.get("HOME")
    if not home:
        raise OSError("HOME is not set, so there is no ~/.vault-token to write")
    path = pathlib.Path(home) / token_helper_name
    descriptor, temporary = tempfile.mkstemp(dir=home, prefix=token_helper_name + ".")  # mkstemp: mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(token)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def read_file_argument(context: Context, path: str, what: str) -> str:
    """A file's text, or stdin's for `-`."""
    if path == "-":
        return context.read_all_stdin(what)
    try:
        return pathlib.Path(path).read_text()
    except OSError as error:
        raise CliError(f"Error reading {what} from {path}: {error.strerror or error}") from None


def positive_versions(values: list[str]) -> list[int]:
    """`-versions=1,2` as integers."""
    try:
        versions = [int(value) for value in values]
    except ValueError:
        raise UsageError(f"invalid -versions {','.join(values)!r}: want comma-separated integers") from None
    if any(version < 0 for version in versions):
        raise UsageError("versions must be zero or greater")
    return versions
