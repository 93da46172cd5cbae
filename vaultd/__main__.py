"""`vaultd` and `python -m vaultd`: run a server, or act on one as an operator (the CLI)."""

import argparse
import logging
import os
import sys

from . import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaultd", description="A Vault-compatible secrets server.")
    parser.add_argument("--version", action="version", version=f"vaultd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="run a node")
    server.add_argument("--config", help="cluster.toml")
    server.add_argument("--node", help="this node's id in cluster.toml")
    server.add_argument("--dev", action="store_true", help="one initialised, unsealed node in a temp dir")
    server.add_argument("--dev-root-token-id", help="the dev root token to use")
    server.add_argument("--dev-listen-address", default="127.0.0.1:8200")
    return parser


def _server(arguments: argparse.Namespace) -> int:
    # aiohttp's C parser (llhttp) refuses the LIST method that hvac and the Vault CLI send; its Python
    # parser accepts any token. It must be chosen before aiohttp is first imported.
    os.environ.setdefault("AIOHTTP_NO_EXTENSIONS", "1")
    import uvloop

    from . import app, config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if arguments.dev:
        uvloop.run(app.run_dev(arguments.dev_root_token_id, arguments.dev_listen_address))
        return 0
    if not arguments.config or not arguments.node:
        print("vaultd server: give --config and --node, or --dev", file=sys.stderr)
        return 2
    try:
        cluster = config.load(arguments.config)
        node = cluster.node(arguments.node)
    except config.ConfigError as error:
        print(f"vaultd: {error}", file=sys.stderr)
        return 2
    if cluster.unsafe_stale_reads:
        if os.environ.get("VAULTD_ALLOW_UNSAFE") != "1":
            print("vaultd: cluster.unsafe_stale_reads is a test-only setting that breaks linearizable reads; "
                  "it is refused unless VAULTD_ALLOW_UNSAFE=1", file=sys.stderr)
            return 2
        logging.getLogger("vaultd").critical(
            "UNSAFE: cluster.unsafe_stale_reads is on: the leader skips its read barrier and a deposed leader "
            "can serve stale reads. Test use only (jepsen_lite's mutation run); never in production.")
    from raft.keyfile import KeyFileError

    try:
        uvloop.run(app.run_node(cluster, node))
    except KeyFileError as error:
        print(f"vaultd: cluster.raft_key_file: {error}", file=sys.stderr)
        return 2
    return 0


def _raft_key(arguments: list[str]) -> int:
    """`vaultd operator raft-key PATH`: write a new 256-bit cluster key, mode 0600; never overwrite one."""
    from raft import keyfile

    if len(arguments) != 1 or arguments[0].startswith("-"):
        print("Usage: vaultd operator raft-key PATH", file=sys.stderr)
        return 2
    try:
        keyfile.generate(arguments[0])
    except FileExistsError:
        print(f"Error: {arguments[0]} exists; a cluster keeps its key (remove it yourself to replace it)",
              file=sys.stderr)
        return 1
    except OSError as error:
        print(f"Error writing {arguments[0]}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"Success! Wrote a 256-bit cluster key to {arguments[0]} (mode 0600). Copy it to every node.")
    return 0


def main(argv: list[str] | None = None) -> int:
    if not __debug__:
        print("vaultd refuses to run under python -O: its assertions guard invariants", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["operator", "raft-key"]:
        return _raft_key(argv[2:])
    if not argv or argv[0] != "server":
        from . import cli  # the operator CLI: standard library only, so it skips the server's imports

        return cli.main(argv)
    arguments = _parser().parse_args(argv)
    try:
        return _server(arguments)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
