"""`vaultd secrets enable|disable|list`: secrets engine mounts at sys/mounts/<path> (vault_api.md §4.1).

`kv-v2` is the Vault CLI's alias for `kv` with `options.version = "2"`, resolved here so that any server takes
it; `-version=2` says the same for `kv`.
"""

from . import output
from .command import Command, Context
from .flags import Flag


def _path(text: str) -> str:
    return text.strip().strip("/") + "/"


def _ttl(value) -> str:
    return "system" if not value else output.human_duration(value)


def enable(context: Context) -> int:
    flags = context.flags
    given_type = context.args[0].strip()
    engine_type, options = given_type, dict(flags["options"] or {})
    if engine_type == "kv-v2":
        engine_type, options["version"] = "kv", "2"
    if flags["version"]:
        options["version"] = str(flags["version"])
    path = _path(flags["path"] or given_type)
    config = {}
    for flag, field in (("default-lease-ttl", "default_lease_ttl"), ("max-lease-ttl", "max_lease_ttl")):
        if flags[flag]:
            config[field] = flags[flag]
    body = {"type": engine_type, "description": flags["description"] or "", "config": config,
            "local": bool(flags["local"]), "seal_wrap": bool(flags["seal-wrap"])}
    if options:
        body["options"] = options
    with context.doing("enabling"):
        reply = context.client.write(f"sys/mounts/{path}", body, method="POST")
    context.warn(output.warnings_text(reply))
    context.say(f"Success! Enabled the {given_type} secrets engine at: {path}")
    return 0


def disable(context: Context) -> int:
    path = _path(context.args[0])
    with context.doing(f"disabling secrets engine at {path}"):
        context.client.delete(f"sys/mounts/{path}")
    context.say(f"Success! Disabled the secrets engine (if it existed) at: {path}")
    return 0


def list_mounts(context: Context) -> int:
    with context.doing("listing secrets engines"):
        reply = context.client.get("sys/mounts") or {}
    mounts = reply.get("data") if isinstance(reply.get("data"), dict) else {}
    if context.json:
        context.say(output.to_json(mounts))
        return 0
    context.say(output.columns(_detailed_rows(mounts) if context.flags["detailed"] else _rows(mounts)))
    return 0


def _rows(mounts: dict) -> list[list[str]]:
    rows = [["Path", "Type", "Accessor", "Description"]]
    for path in sorted(mounts):
        mount = mounts[path]
        rows.append([path, mount.get("type", ""), mount.get("accessor", ""), mount.get("description") or "n/a"])
    return rows


def _detailed_rows(mounts: dict) -> list[list[str]]:
    rows = [["Path", "Plugin", "Accessor", "Default TTL", "Max TTL", "Force No Cache", "Replication",
             "Seal Wrap", "External Entropy Access", "Options", "Description", "UUID"]]
    for path in sorted(mounts):
        mount = mounts[path]
        config = mount.get("config") or {}
        rows.append([
            path, mount.get("type", ""), mount.get("accessor", ""), _ttl(config.get("default_lease_ttl")),
            _ttl(config.get("max_lease_ttl")), output.go_value(bool(config.get("force_no_cache"))),
            "local" if mount.get("local") else "replicated", output.go_value(bool(mount.get("seal_wrap"))),
            output.go_value(bool(mount.get("external_entropy_access"))), output.go_value(mount.get("options") or {}),
            mount.get("description") or "n/a", mount.get("uuid", ""),
        ])
    return rows


commands = [
    Command("secrets enable", "TYPE", "Enable a secrets engine (kv, kv-v2, ...) at -path (default: its type).",
            enable,
            {"path": Flag("string", "where to mount it (default: the type)"),
             "description": Flag("string", "a human-friendly description"),
             "version": Flag("int", "the KV version (2 for kv-v2)", 0),
             "options": Flag("map", "a key=value option of the engine; repeat for more"),
             "default-lease-ttl": Flag("string", "the mount's default lease TTL"),
             "max-lease-ttl": Flag("string", "the mount's maximum lease TTL"),
             "local": Flag("bool", "do not replicate the mount to other clusters"),
             "seal-wrap": Flag("bool", "seal-wrap the mount's critical values")},
            arity=(1, 1)),
    Command("secrets disable", "PATH", "Disable the secrets engine at PATH, deleting all its data.", disable,
            arity=(1, 1)),
    Command("secrets list", "", "List the enabled secrets engines.", list_mounts,
            {"detailed": Flag("bool", "also show TTLs, replication, options and UUIDs")}),
]
