"""`vaultd <command>`: the operator and user CLI, speaking Vault's HTTP API to `VAULT_ADDR` with
`VAULT_TOKEN`, in the Vault CLI's syntax and output (`vaultd kv get -format=json secret/app`).

`vaultd/__main__.py` hands every command but `server` to `main`. The modules here hold one command group each
and import nothing outside the standard library and this package: the CLI is a client, not a part of the
server. Exit statuses: 0 success; 1 the command failed (its `Error ...: <why>` is on stderr); 2 a usage error,
or Vault's "nothing there" answers (a sealed `status`, `No value found at ...`).
"""

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from .. import __version__
from . import (
    audit,
    generate_root,
    kv,
    kv_metadata,
    logical,
    login,
    operator,
    policies,
    raft,
    rekey,
    secrets_engines,
    tokens,
    wrapping,
)
from .command import Command, Context
from .errors import CliError, UsageError
from .flags import parse

_all = [
    *operator.commands, *raft.commands, rekey.command, generate_root.command, *kv.commands, *kv_metadata.commands,
    *tokens.commands, *policies.commands, *audit.commands, *secrets_engines.commands, *logical.commands,
    *login.commands, *wrapping.commands,
]
COMMANDS: dict[tuple[str, ...], Command] = {tuple(command.words.split()): command for command in _all}
assert len(COMMANDS) == len(_all), "two commands share their words"
GROUPS = sorted({words[0] for words in COMMANDS if len(words) > 1} | {"server"})
_help_words = ("-h", "-help", "--help", "help")
_version_words = ("-v", "-version", "--version", "version")


def main(argv: list[str] | None = None, *, environ: Mapping[str, str] | None = None, stdin: TextIO | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one command; return its exit status. The streams and environment default to the process's."""
    argv = list(sys.argv[1:] if argv is None else argv)
    streams = (stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)
    try:
        return _run(argv, os.environ if environ is None else environ, *streams)
    except UsageError as error:
        print(f"Error: {error}", file=streams[2])
        command, _, _ = _resolve(argv)
        hint = f"vaultd {command.words} -help" if command else "vaultd -help"
        print(f'Run "{hint}" for usage.', file=streams[2])
        return error.exit_status
    except CliError as error:
        print(str(error), file=streams[2])
        return error.exit_status
    except KeyboardInterrupt:
        return 130


def _run(argv: list[str], environ: Mapping[str, str], stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    if not argv or argv[0] in _help_words:
        print(top_level_usage(), file=stdout if argv else stderr)
        return 0 if argv else 2
    if argv[0] in _version_words:
        print(f"vaultd {__version__}", file=stdout)
        return 0
    if argv[0] == "server":
        raise UsageError('"vaultd server" runs a node: start it with "python -m vaultd server ..."')
    command, group_words, rest = _resolve(argv)
    if command is None:
        return _group_usage(group_words, argv, stdout)
    values, arguments = parse(rest, command.all_flags())
    if values["help"] or values["h"]:
        print(command.usage(), file=stdout)
        return 0
    context = Context(command, values, arguments, environ, stdin, stdout, stderr)
    return command.run(context)


def _resolve(argv: list[str]) -> tuple[Command | None, list[str], list[str]]:
    """The command named by the longest run of leading words, the words, and the rest of `argv`."""
    words = []
    for word in argv:
        if word.startswith("-"):
            break
        words.append(word)
    for count in range(len(words), 0, -1):
        command = COMMANDS.get(tuple(words[:count]))
        if command is not None:
            return command, words[:count], argv[count:]
    return None, words, argv[len(words):]


def _group_usage(words: list[str], argv: list[str], stdout: TextIO) -> int:
    """`vaultd kv` alone lists the kv commands; an unknown command is a usage error."""
    group = [command for key, command in COMMANDS.items() if key[:len(words)] == tuple(words) and words]
    asked_for_help = any(word in _help_words for word in argv)
    if not group:
        raise UsageError(f'unknown command "vaultd {" ".join(words or argv[:1])}"')
    print(f"Usage: vaultd {' '.join(words)} <subcommand> [options] [args]\n", file=stdout)
    print(_command_lines(group), file=stdout)
    return 0 if asked_for_help else 2


def _command_lines(commands: list[Command]) -> str:
    width = max(len(command.words) for command in commands)
    return "\n".join(f"    {command.words:<{width}}    {command.summary}" for command in commands)


def top_level_usage() -> str:
    return "\n".join([
        "Usage: vaultd <command> [options] [args]",
        "",
        "    server    Run a node (vaultd server --help).",
        _command_lines(list(COMMANDS.values())),
        "",
        "The server is VAULT_ADDR (default http://127.0.0.1:8200), the token VAULT_TOKEN; every command also",
        'takes -address, -token, -format=json and -help. "vaultd <command> -help" shows a command\'s flags.',
    ])
