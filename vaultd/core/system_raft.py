"""sys/step-down and sys/storage/raft/{configuration,remove-peer,autopilot/state} (vault_api.md §2.4, §5).

They act through the core's HighAvailability. On a standby each raises StandbyWrite, so the request goes to
the active node like a write. Snapshot save and restore stream raw bytes: vaultd/http/raft_routes.py.
"""

from ..sdk import errors
from ..sdk.path import Field, FieldType, Path
from ..sdk.request import Operation, Response


def raft_paths(core) -> list[Path]:
    def raft():
        if not core.ha.enabled:
            raise errors.InvalidRequest("raft storage is not in use")
        return core.ha

    async def step_down(request, fields):
        await core.ha.step_down()
        return None

    async def configuration(request, fields):
        return Response(data=await raft().configuration())

    async def remove_peer(request, fields):
        server_id = fields.get("server_id") or ""
        if not server_id:
            raise errors.InvalidRequest("no server id provided")
        await raft().remove_peer(server_id)
        return None

    async def autopilot_state(request, fields):
        return Response(data=await raft().autopilot_state())

    return [
        Path("step-down", {}, {Operation.UPDATE: step_down}, help="give up active status"),
        Path("storage/raft/configuration", {}, {Operation.READ: configuration}, help="the raft servers"),
        Path("storage/raft/remove-peer", {"server_id": Field(FieldType.STRING)}, {Operation.UPDATE: remove_peer},
             help="remove a server from the raft cluster"),
        Path("storage/raft/autopilot/state", {}, {Operation.READ: autopilot_state},
             help="health, last contact and index of every raft server"),
    ]
