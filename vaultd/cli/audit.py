"""`vaultd audit enable|list|disable`: audit devices at sys/audit/<path> (vault_api.md §4.5). The device's
options are `key=value` arguments after its type: `vaultd audit enable file file_path=/var/log/vault.log`."""

from . import output
from .command import Command, Context
from .errors import NotFound
from .flags import Flag, parse_key_values


def _path(text: str) -> str:
    return text.strip().strip("/") + "/"


def enable(context: Context) -> int:
    device_type = context.args[0].strip()
    path = _path(context.flags["path"] or device_type)
    body = {"type": device_type, "description": context.flags["description"] or "",
            "options": parse_key_values(context.args[1:], "option"), "local": bool(context.flags["local"])}
    with context.doing("enabling audit device"):
        reply = context.client.write(f"sys/audit/{path}", body)
    context.warn(output.warnings_text(reply))
    context.say(f"Success! Enabled the {device_type} audit device at: {path}")
    return 0


def list_devices(context: Context) -> int:
    with context.doing("retrieving audit devices"):
        reply = context.client.get("sys/audit") or {}
    devices = reply.get("data") if isinstance(reply.get("data"), dict) else {}
    if context.json:
        context.say(output.to_json(devices))
        return 0
    if not devices:
        raise NotFound("No audit devices are enabled.")
    detailed = context.flags["detailed"]
    rows = [["Path", "Type", "Description", *(["Replication", "Options"] if detailed else [])]]
    for path in sorted(devices):
        device = devices[path]
        row = [path, device.get("type", ""), device.get("description") or "n/a"]
        if detailed:
            options = device.get("options") or {}
            row += ["local" if device.get("local") else "replicated",
                    " ".join(f"{key}={options[key]}" for key in sorted(options))]
        rows.append(row)
    context.say(output.columns(rows))
    return 0


def disable(context: Context) -> int:
    path = _path(context.args[0])
    with context.doing("disabling audit device"):
        context.client.delete(f"sys/audit/{path}")
    context.say(f"Success! Disabled audit device (if it was enabled) at: {path}")
    return 0


commands = [
    Command("audit enable", "TYPE [K=V...]", "Enable an audit device; K=V are its options (file_path=...).",
            enable, {"path": Flag("string", "where to enable it (default: its type)"),
                     "description": Flag("string", "a human-friendly description"),
                     "local": Flag("bool", "do not replicate the device to other clusters")},
            arity=(1, None)),
    Command("audit list", "", "List the enabled audit devices.", list_devices,
            {"detailed": Flag("bool", "also show replication and options")}),
    Command("audit disable", "PATH", "Disable the audit device at PATH.", disable, arity=(1, 1)),
]
