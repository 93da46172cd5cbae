"""`vaultd operator raft list-peers|join|remove-peer|snapshot save|snapshot restore|autopilot state` and
`vaultd operator step-down`: the Raft operator's commands, in the Vault CLI's syntax and output.

`join` goes to the node that is to join (VAULT_ADDR is the new node), the others to any member: a standby
answers the snapshot paths with a 307 to the leader, which the client follows once, re-sending the body.
Snapshots travel as raw bytes (application/octet-stream) and are written to disk whole, with mode 0600: they
hold all of the cluster's (encrypted) data.
"""

import contextlib
import os
import pathlib
import tempfile

from . import output
from .command import Command, Context
from .errors import CliError, NotFound
from .flags import Flag

configuration_path = "sys/storage/raft/configuration"
snapshot_path = "sys/storage/raft/snapshot"
# Vault's autopilot `-format=pretty` aligns its values at this column.
autopilot_label_width = 33
server_label_width = 19


def list_peers(context: Context) -> int:
    with context.doing("reading the raft cluster configuration"):
        body = context.client.read(configuration_path)
    if body is None:
        raise NotFound("No raft cluster configuration found")
    servers = ((body.get("data") or {}).get("config") or {}).get("servers") or []
    rows = [["Node", "Address", "State", "Voter"]]
    for server in servers:
        state = "leader" if server.get("leader") else "follower"
        rows.append([str(server.get("node_id", "")), str(server.get("address", "")), state,
                     output.go_value(bool(server.get("voter")))])
    context.emit(body, lambda: output.columns(rows))
    return 0


def join(context: Context) -> int:
    request = {"leader_api_addr": context.args[0].strip()}
    if context.flags["non-voter"]:
        request["non_voter"] = True
    with context.doing("joining the node to the Raft cluster"):
        body = context.client.write("sys/storage/raft/join", request, method="POST") or {}
    joined = bool(body.get("joined", (body.get("data") or {}).get("joined")))
    if context.json:
        context.say(output.to_json({"joined": joined}))
    else:
        context.say(output.key_value_table([("Joined", output.go_value(joined))]))
    return 0


def remove_peer(context: Context) -> int:
    with context.doing("removing the peer from raft cluster"):
        context.client.write("sys/storage/raft/remove-peer", {"server_id": context.args[0].strip()}, method="POST")
    context.say("Peer removed successfully!")
    return 0


def snapshot_save(context: Context) -> int:
    path = pathlib.Path(context.args[0].strip())
    with context.doing("taking the snapshot"):
        snapshot = context.client.request_bytes("GET", snapshot_path)
    if not snapshot:
        raise CliError("Error taking the snapshot: the server sent an empty snapshot")
    try:
        _write_private(path, snapshot)
    except OSError as error:
        raise CliError(f"Error taking the snapshot: writing {path}: {error.strerror or error}") from None
    return 0


def _write_private(path: pathlib.Path, content: bytes) -> None:
    """Write `content` to `path` whole (a temporary file in the same folder renamed over it) and mode 0600 from
    the start, so no other user can read it and no reader sees half a snapshot."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")  # mkstemp: mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def snapshot_restore(context: Context) -> int:
    path = pathlib.Path(context.args[0].strip())
    try:
        snapshot = path.read_bytes()
    except OSError as error:
        raise CliError(f"Error opening the snapshot file {path}: {error.strerror or error}") from None
    if not snapshot:
        raise CliError(f"Error installing the snapshot: {path} is empty")
    target = snapshot_path + ("-force" if context.flags["force"] else "")
    with context.doing("installing the snapshot"):
        context.client.request_bytes("POST", target, snapshot)
    return 0


def autopilot_state(context: Context) -> int:
    with context.doing("checking autopilot state"):
        body = context.client.get("sys/storage/raft/autopilot/state")
    if body is None:
        return 0
    state = body.get("data") or body
    context.warn(output.warnings_text(body))
    context.say(output.to_json(state) if context.json else autopilot_text(state))
    return 0


def autopilot_text(state: dict) -> str:
    """Vault's `-format=pretty` of the autopilot state, the default for this command."""
    lines = [_labelled("Healthy", state.get("healthy", False), autopilot_label_width),
             _labelled("Failure Tolerance", state.get("failure_tolerance", 0), autopilot_label_width),
             _labelled("Leader", state.get("leader", ""), autopilot_label_width), "Voters:"]
    lines += [f"   {voter}" for voter in state.get("voters") or []]
    if state.get("non_voters"):
        lines += ["Non Voters:", *[f"   {voter}" for voter in state["non_voters"]]]
    if state.get("optimistic_failure_tolerance"):
        lines.append(_labelled("Optimistic Failure Tolerance", state["optimistic_failure_tolerance"],
                               autopilot_label_width))
    lines.append("Servers:")
    servers = state.get("servers") or {}
    for server_id in sorted(servers):
        server = servers[server_id] or {}
        lines.append(f"   {server.get('id', server_id)}")
        for title, key, default in _server_rows:
            if key in _server_optional and not server.get(key):
                continue
            lines.append("      " + _labelled(title, server.get(key, default), server_label_width))
    return "\n".join(lines)


# Vault prints the last three only when set.
_server_rows = (("Name", "name", ""), ("Address", "address", ""), ("Status", "status", ""),
                ("Node Status", "node_status", ""), ("Healthy", "healthy", False), ("Last Contact", "last_contact", ""),
                ("Last Term", "last_term", 0), ("Last Index", "last_index", 0), ("Version", "version", ""),
                ("Upgrade Version", "upgrade_version", ""), ("Redundancy Zone", "redundancy_zone", ""),
                ("Node Type", "node_type", ""))
_server_optional = ("upgrade_version", "redundancy_zone", "node_type")


def _labelled(title: str, value, width: int) -> str:
    return f"{title + ':':<{width}}{_go(value)}".rstrip()


def _go(value) -> str:
    """A value as Go's `%s`/`%t`/`%d` print it: an empty string stays empty (not `n/a`)."""
    return value if isinstance(value, str) else output.go_value(value)


def step_down(context: Context) -> int:
    with context.doing("stepping down"):
        context.client.write("sys/step-down")
    context.say(f"Success! Stepped down: {context.client.address}")
    return 0


commands = [
    Command("operator raft list-peers", "", "List the Raft cluster's members: node, address, state, voter.",
            list_peers),
    Command("operator raft join", "LEADER_API_ADDR", "Join the node at VAULT_ADDR to the cluster that leads at "
            "LEADER_API_ADDR.", join, {"non-voter": Flag("bool", "join as a non-voter (not in the quorum)")},
            arity=(1, 1)),
    Command("operator raft remove-peer", "SERVER_ID", "Remove a member from the Raft cluster.", remove_peer,
            arity=(1, 1)),
    Command("operator raft snapshot save", "FILE", "Save a snapshot of the cluster's state to FILE (mode 0600).",
            snapshot_save, arity=(1, 1)),
    Command("operator raft snapshot restore", "FILE", "Install the snapshot in FILE on the cluster.",
            snapshot_restore, {"force": Flag("bool", "install it even if it was taken of another cluster "
                                                     "(another keyring)")}, arity=(1, 1)),
    Command("operator raft autopilot state", "", "Show the cluster's health as autopilot sees it.", autopilot_state),
    Command("operator step-down", "", "Make the active node give up leadership; another member takes over.",
            step_down),
]
