"""`vaultd read|write|delete|list PATH`: any API path, as the Vault CLI's generic commands (`vault write
transit/encrypt/k plaintext=aGkK`, `vault read secret/data/app`).

The path is sent as given, with no KV preflight. Data is `k=v`, `k=@file`, `k=-` (stdin) or a lone `-` (a JSON
object on stdin); on read and delete the pairs are query parameters. A response prints as Vault's secret table
(lease, auth, wrap_info and data rows) or, with `-field=NAME`, one bare value. `-wrap-ttl=5m` asks the server to
wrap the response; the table then shows the wrapping token, which `vaultd unwrap` redeems once.
"""

from . import output
from .command import Command, Context
from .errors import CliError, NotFound, UsageError
from .flags import Flag, parse_key_values
from .kv import parse_data, sanitize


def has_content(body: dict | None) -> bool:
    """Whether a response has anything Vault's table would print (a bare 200 envelope has not)."""
    return bool(body) and any(body.get(key) for key in ("data", "auth", "wrap_info", "lease_duration"))


def show(context: Context, body: dict, field: str = "") -> int:
    """A response as `-field` picks from it, else as JSON or Vault's secret table."""
    if field:
        value = output.secret_field(body, field)
        if value is None:
            raise CliError(f'Field "{field}" not present in secret')
        context.say(output.raw_field(value))
        return 0
    context.emit(body, lambda: output.secret_table(body))
    return 0


def _path(context: Context) -> str:
    path = sanitize(context.args[0])
    if not path:
        raise UsageError("give a path, e.g. secret/data/app")
    return path


def read(context: Context) -> int:
    path = _path(context)
    query = parse_key_values(context.args[1:], "query parameter")
    with context.doing(f"reading {path}"):
        reply = context.client.read(path, query or None)
    if reply is None:
        raise NotFound(f"No value found at {path}")
    if not has_content(reply) and not context.flags["field"]:
        context.warn(output.warnings_text(reply))  # Vault prints nothing for an empty secret
        return 0
    return show(context, reply, context.flags["field"])


def write(context: Context) -> int:
    path = _path(context)
    data = parse_data(context, context.args[1:])
    if not data and not (context.flags["force"] or context.flags["f"]):
        raise UsageError("Must supply data or use -force")
    with context.doing(f"writing data to {path}"):
        reply = context.client.write(path, data)
    if reply is None or (not has_content(reply) and not context.flags["field"]):
        context.warn(output.warnings_text(reply))
        if not context.json:
            context.say(f"Success! Data written to: {path}")
        return 0
    return show(context, reply, context.flags["field"])


def delete(context: Context) -> int:
    path = _path(context)
    query = parse_key_values(context.args[1:], "query parameter")
    with context.doing(f"deleting {path}"):
        reply = context.client.delete(path, query or None)
    if not has_content(reply):
        context.warn(output.warnings_text(reply))
        if not context.json:
            context.say(f"Success! Data deleted (if it existed) at: {path}")
        return 0
    return show(context, reply)


def list_keys(context: Context) -> int:
    path = _path(context) + "/"
    with context.doing(f"listing {path}"):
        reply = context.client.list(path)
    if reply and reply.get("wrap_info"):
        return show(context, reply)
    data = (reply or {}).get("data")
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        if context.json:  # as Vault: an empty object on stdout, and the "nothing there" status
            context.say("{}")
            return NotFound.exit_status
        raise NotFound(f"No value found at {path}" if not data else f"No entries found at {path}")
    show_keys(context, reply, keys)
    return 0


def show_keys(context: Context, reply: dict, keys: list) -> None:
    context.warn(output.warnings_text(reply))
    context.say(output.to_json(keys) if context.json else output.key_list(keys))


field_flag = {"field": Flag("string", "print only this field: a data key, or e.g. wrapping_token, token")}
wrap_flag = {"wrap-ttl": Flag("string", "wrap the response in a single-use token living this long (5m, 300)")}

commands = [
    Command("read", "PATH [K=V...]", "Read the data at any API path; K=V pairs are query parameters.", read,
            {**field_flag, **wrap_flag}, arity=(1, None)),
    Command("write", "PATH [K=V...]", "Write data to any API path (k=v, k=@file, k=-, or - for JSON on stdin).",
            write,
            {**field_flag, **wrap_flag, "force": Flag("bool", "write even without data"),
             "f": Flag("bool", "the same as -force")}, arity=(1, None)),
    Command("delete", "PATH [K=V...]", "Delete the data at any API path; K=V pairs are query parameters.", delete,
            arity=(1, None)),
    Command("list", "PATH", "List the keys under any API path; folders end with /.", list_keys, wrap_flag,
            arity=(1, 1)),
]
