"""`vaultd kv put|get|delete|undelete|destroy|list`: the KV engine, either version.

As the Vault CLI does, each command first asks GET sys/internal/ui/mounts/<path> which mount serves the path
and with which `options.version`, then speaks KV v2 (`<mount>/data/<key>`, `/delete/`, `/undelete/`,
`/destroy/`, `/metadata/`) or KV v1 (`<mount>/<key>`). `-mount=secret` names the mount, and the argument is
then the key within it. A 404 on that lookup means a server without it: KV v1, the path used as given.
"""

import dataclasses
import json

from . import output
from .command import Command, Context, positive_versions, read_file_argument
from .errors import CliError, NotFound, UsageError
from .flags import Flag

mount_flag = {"mount": Flag("string", "the KV mount; the argument is then the key within it")}


@dataclasses.dataclass(frozen=True)
class KvPath:
    mount: str  # "secret/"; "" when the server could not say
    version: int
    key: str  # within the mount, without slashes at either end; "" for the mount itself

    def api(self, prefix: str) -> str:
        """The API path: `secret/data/foo` for KV v2 with prefix "data", `kv/foo` for KV v1."""
        parts = [self.mount.rstrip("/"), prefix if self.version == 2 else "", self.key]
        return "/".join(part for part in parts if part)


def sanitize(path: str) -> str:
    return path.strip().strip("/")


def resolve(context: Context) -> KvPath:
    argument = sanitize(context.args[0])
    named_mount = sanitize(context.flags["mount"] or "")
    lookup = named_mount or argument
    if not lookup:
        raise UsageError("give a path: MOUNT/KEY, or -mount=MOUNT KEY")
    with context.doing(f"determining the KV mount of {lookup}"):
        status, body = context.client.request("GET", f"sys/internal/ui/mounts/{lookup}", accept_not_found=True)
    if status == 404 or not body:
        return KvPath(named_mount + "/" if named_mount else "", 1, argument)
    mount_info = body.get("data") or {}
    mount = mount_info.get("path") or (named_mount + "/" if named_mount else "")
    version = 2 if str((mount_info.get("options") or {}).get("version", "1")) == "2" else 1
    if named_mount:
        return KvPath(mount, version, argument)
    key = argument[len(mount):] if (argument + "/").startswith(mount) else argument
    return KvPath(mount, version, sanitize(key))


def require_v2(path: KvPath, what: str) -> None:
    if path.version != 2:
        raise CliError(f"{what} not supported on KV Version 1")


def parse_data(context: Context, words: list[str]) -> dict:
    """`k=v` pairs, `k=@file` (the file's text), `k=-` (stdin), or a lone `-`: a JSON object on stdin."""
    if words == ["-"]:
        try:
            data = json.loads(context.read_all_stdin("JSON data"))
        except ValueError as error:
            raise UsageError(f"stdin is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise UsageError("the JSON on stdin must be an object")
        return data
    data = {}
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise UsageError(f"invalid key/value pair {word!r}: want key=value, key=@file or key=-")
        if value.startswith("@"):
            value = read_file_argument(context, value[1:], f"the value of {key}")
        elif value == "-":
            value = context.read_all_stdin(f"value of {key}")
        data[key] = value
    return data


def put(context: Context) -> int:
    path = resolve(context)
    data = parse_data(context, context.args[1:])
    if not data:
        raise UsageError("Must supply data: key=value pairs after the path")
    api_path = path.api("data")
    body = data
    if path.version == 2:
        body = {"data": data}
        if context.flags["cas"] >= 0:
            body["options"] = {"cas": context.flags["cas"]}
    with context.doing(f"writing data to {api_path}"):
        reply = context.client.write(api_path, body)
    if path.version != 2 or reply is None:
        context.warn(output.warnings_text(reply))
        context.say(f"Success! Data written to: {api_path}")
        return 0
    metadata = reply.get("data") or {}
    context.emit(reply, lambda: "\n".join([output.path_header("Secret Path", api_path),
                                            output.header_for("Metadata", metadata), output.data_table(metadata)]))
    return 0


def get(context: Context) -> int:
    path = resolve(context)
    api_path = path.api("data")
    query = {"version": str(context.flags["version"])} if path.version == 2 and context.flags["version"] else None
    with context.doing(f"reading {api_path}"):
        reply = context.client.read(api_path, query)
    if reply is None:
        raise NotFound(f"No value found at {api_path}")
    secret = reply.get("data") or {}
    data = (secret.get("data") if path.version == 2 else secret) or {}
    if context.flags["field"]:
        field = context.flags["field"]
        if field not in data:
            raise CliError(f'Field "{field}" not present in secret')
        context.say(output.raw_field(data[field]))
        return 0
    context.emit(reply, lambda: _get_table(path, api_path, reply))
    return 0


def _get_table(path: KvPath, api_path: str, reply: dict) -> str:
    if path.version != 2:
        return output.secret_table(reply)
    secret = reply.get("data") or {}
    parts = [output.path_header("Secret Path", api_path)]
    metadata = secret.get("metadata")
    if metadata:
        parts += [output.header_for("Metadata", metadata), output.data_table(metadata), ""]
    data = secret.get("data")
    if data is not None:
        parts += [output.header_for("Data", data), output.data_table(data)]
    return "\n".join(parts).rstrip("\n")


def delete(context: Context) -> int:
    path = resolve(context)
    versions = positive_versions(context.flags["versions"])
    if path.version == 2 and versions:
        api_path = path.api("delete")
        with context.doing(f"deleting {api_path}"):
            context.client.write(api_path, {"versions": versions})
    else:
        if versions:
            raise UsageError("-versions is only for KV Version 2")
        api_path = path.api("data")
        with context.doing(f"deleting {api_path}"):
            context.client.delete(api_path)
    context.say(f"Success! Data deleted (if it existed) at: {api_path}")
    return 0


def _versions_write(context: Context, verb: str) -> int:
    path = resolve(context)
    require_v2(path, verb.capitalize())
    versions = positive_versions(context.flags["versions"])
    if not versions:
        raise UsageError(f'No versions provided, use the "-versions" flag to specify the version to {verb}.')
    api_path = path.api(verb)
    with context.doing(f"writing data to {api_path}"):
        context.client.write(api_path, {"versions": versions})
    context.say(f"Success! Data written to: {api_path}")
    return 0


def undelete(context: Context) -> int:
    return _versions_write(context, "undelete")


def destroy(context: Context) -> int:
    return _versions_write(context, "destroy")


def list_keys(context: Context) -> int:
    path = resolve(context)
    api_path = path.api("metadata")
    with context.doing(f"listing {api_path}"):
        reply = context.client.list(api_path)
    keys = ((reply or {}).get("data") or {}).get("keys") or []
    if not keys:
        raise NotFound(f"No value found at {api_path}")
    context.warn(output.warnings_text(reply))
    context.say(output.to_json(keys) if context.json else output.key_list(keys))
    return 0


versions_flag = {"versions": Flag("list", "comma-separated version numbers")}

commands = [
    Command("kv put", "PATH K=V...", "Write key/value data; a new version on KV v2.", put,
            {**mount_flag, "cas": Flag("int", "check-and-set: the version expected now (0: must not exist)", -1)},
            arity=(1, None)),
    Command("kv get", "PATH", "Read the data at a path (-version=N: an older version).", get,
            {**mount_flag, "version": Flag("int", "the version to read (KV v2)", 0),
             "field": Flag("string", "print only this field's value")}, arity=(1, 1)),
    Command("kv delete", "PATH", "Delete the latest version, or -versions (KV v2, recoverable).", delete,
            {**mount_flag, **versions_flag}, arity=(1, 1)),
    Command("kv undelete", "PATH", "Undelete -versions of a KV v2 secret.", undelete,
            {**mount_flag, **versions_flag}, arity=(1, 1)),
    Command("kv destroy", "PATH", "Destroy -versions of a KV v2 secret for good.", destroy,
            {**mount_flag, **versions_flag}, arity=(1, 1)),
    Command("kv list", "PATH", "List the keys under a path; folders end with /.", list_keys, mount_flag,
            arity=(1, 1)),
]
