"""`vaultd` and `python -m vaultd`: the operator's command line."""

import argparse
import sys

from . import __version__

# What a command needs that is not built yet, and the issue that builds it.
_not_built = {
    "server": "the HTTP API server (issue 3: vaultd on one node; issue 5: the Raft cluster)",
    "status": "the seal status client (issue 3)",
    "operator": "init, unseal, rekey and raft operations (issues 3, 5 and 6)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaultd", description="A Vault-compatible secrets server.")
    parser.add_argument("--version", action="version", version=f"vaultd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="run a node")
    server.add_argument("--config")
    server.add_argument("--node")
    server.add_argument("--dev", action="store_true")
    commands.add_parser("status", help="show a node's seal status")
    commands.add_parser("operator", help="operator commands")
    return parser


def main(argv: list[str] | None = None) -> int:
    if not __debug__:
        print("vaultd refuses to run under python -O: its assertions guard invariants", file=sys.stderr)
        return 2
    arguments = _parser().parse_args(argv)
    print(
        f"vaultd {__version__}: `{arguments.command}` is not built yet; it needs {_not_built[arguments.command]}.\n"
        "Built so far: the sealed log-structured store (storage/), tested by `make test`, "
        "measured by `make bench`.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
