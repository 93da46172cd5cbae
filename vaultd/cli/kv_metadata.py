"""`vaultd kv metadata get|put|delete`: a KV v2 secret's metadata (`<mount>/metadata/<key>`): its versions,
`max_versions`, `cas_required`, `delete_version_after` and `custom_metadata`. KV v1 has none."""

from . import output
from .command import Command, Context
from .errors import NotFound
from .flags import Flag
from .kv import mount_flag, require_v2, resolve


def get(context: Context) -> int:
    path = resolve(context)
    require_v2(path, "Metadata")
    api_path = path.api("metadata")
    with context.doing(f"reading {api_path}"):
        reply = context.client.read(api_path)
    if reply is None:
        raise NotFound(f"No value found at {api_path}")
    context.emit(reply, lambda: _table(api_path, reply.get("data") or {}))
    return 0


def _table(api_path: str, metadata: dict) -> str:
    versions = metadata.get("versions") or {}
    rest = {key: value for key, value in metadata.items() if key != "versions"}
    parts = [output.path_header("Metadata Path", api_path), output.header_for("Metadata", rest),
             output.data_table(rest)]
    for number in sorted(versions, key=lambda text: int(text) if text.isdigit() else 0):
        parts += ["", output.header_for(f"Version {number}", versions[number]), output.data_table(versions[number])]
    return "\n".join(parts)


def put(context: Context) -> int:
    path = resolve(context)
    require_v2(path, "Metadata")
    body: dict = {}
    if context.flags["max-versions"] >= 0:
        body["max_versions"] = context.flags["max-versions"]
    if context.flags.given("cas-required"):
        body["cas_required"] = context.flags["cas-required"]
    if context.flags["delete-version-after"]:
        body["delete_version_after"] = context.flags["delete-version-after"]
    if context.flags["custom-metadata"]:
        body["custom_metadata"] = context.flags["custom-metadata"]
    api_path = path.api("metadata")
    with context.doing(f"writing data to {api_path}"):
        reply = context.client.write(api_path, body)
    context.warn(output.warnings_text(reply))
    context.say(f"Success! Data written to: {api_path}")
    return 0


def delete(context: Context) -> int:
    path = resolve(context)
    require_v2(path, "Metadata")
    api_path = path.api("metadata")
    with context.doing(f"deleting {api_path}"):
        context.client.delete(api_path)
    context.say(f"Success! Data deleted (if it existed) at: {api_path}")
    return 0


commands = [
    Command("kv metadata get", "PATH", "Read a KV v2 secret's metadata and the state of each version.", get,
            mount_flag, arity=(1, 1)),
    Command("kv metadata put", "PATH", "Set a KV v2 secret's metadata.", put,
            {**mount_flag,
             "max-versions": Flag("int", "versions to keep (0: the mount's setting)", -1),
             "cas-required": Flag("bool", "require check-and-set on writes"),
             "delete-version-after": Flag("string", "delete each version this long after it is written (3h25m)"),
             "custom-metadata": Flag("map", "a key=value pair of custom metadata; repeat for more")},
            arity=(1, 1)),
    Command("kv metadata delete", "PATH", "Delete a KV v2 secret: every version and its metadata.", delete,
            mount_flag, arity=(1, 1)),
]
