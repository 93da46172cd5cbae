"""`vaultd token create|lookup|renew|revoke`: the token store at auth/token/ (vault_api.md §7.2).

Without a TOKEN argument, lookup and renew act on the calling token (lookup-self, renew-self); `-accessor`
makes the argument an accessor. `revoke -mode=orphan` keeps the children (as orphans), `-self` revokes the
calling token.
"""

from . import output
from .command import Command, Context
from .errors import CliError, UsageError
from .flags import Flag


def _duration(text: str) -> str | int:
    """Vault's duration fields take "1h" or a number of seconds."""
    return int(text) if text.isdigit() else text


def create(context: Context) -> int:
    flags = context.flags
    body: dict = {}
    if flags["policy"]:
        body["policies"] = flags["policy"]
    for flag, field in (("ttl", "ttl"), ("explicit-max-ttl", "explicit_max_ttl"), ("period", "period")):
        if flags[flag]:
            body[field] = _duration(flags[flag])
    for flag, field in (("display-name", "display_name"), ("id", "id"), ("type", "type")):
        if flags[flag]:
            body[field] = flags[flag]
    if flags["num-uses"]:
        body["num_uses"] = flags["num-uses"]
    if flags["metadata"]:
        body["meta"] = flags["metadata"]
    if flags["orphan"]:
        body["no_parent"] = True
    if flags["no-default-policy"]:
        body["no_default_policy"] = True
    if flags.given("renewable"):
        body["renewable"] = flags["renewable"]
    path = f"auth/token/create/{flags['role']}" if flags["role"] else "auth/token/create"
    with context.doing("creating token"):
        reply = context.client.write(path, body, method="POST") or {}
    return _show_auth(context, reply)


def _show_auth(context: Context, reply: dict) -> int:
    field = context.flags["field"]
    if not field:
        context.emit(reply, lambda: output.secret_table(reply))
        return 0
    pairs = dict(output.auth_pairs(reply.get("auth") or {}))
    if field not in pairs:
        raise CliError(f'Field "{field}" not present in secret')
    context.say(pairs[field])
    return 0


def lookup(context: Context) -> int:
    token = context.args[0] if context.args else ""
    if context.flags["accessor"]:
        if not token:
            raise UsageError("-accessor needs the accessor as the argument")
        path, body = "auth/token/lookup-accessor", {"accessor": token}
    elif token:
        path, body = "auth/token/lookup", {"token": token}
    else:
        path, body = "auth/token/lookup-self", None
    with context.doing("looking up token"):
        reply = context.client.read(path) if body is None else context.client.write(path, body, method="POST")
    reply = reply or {}
    context.emit(reply, lambda: output.secret_table(reply))
    return 0


def renew(context: Context) -> int:
    token = context.args[0] if context.args else ""
    body: dict = {}
    if context.flags["increment"]:
        body["increment"] = _duration(context.flags["increment"])
    if context.flags["accessor"]:
        if not token:
            raise UsageError("-accessor needs the accessor as the argument")
        path, body["accessor"] = "auth/token/renew-accessor", token
    elif token:
        path, body["token"] = "auth/token/renew", token
    else:
        path = "auth/token/renew-self"
    with context.doing("renewing token"):
        reply = context.client.write(path, body, method="POST") or {}
    return _show_auth(context, reply)


def revoke(context: Context) -> int:
    flags = context.flags
    token = context.args[0] if context.args else ""
    mode = flags["mode"] or ""
    if mode not in ("", "orphan", "path"):
        raise UsageError(f'invalid -mode {mode!r}: want "orphan" or "path"')
    if flags["self"]:
        if token or flags["accessor"] or mode:
            raise UsageError("-self takes no token, -accessor or -mode")
        path, body = "auth/token/revoke-self", {}
    elif not token:
        raise UsageError("Not enough arguments (expected 1, got 0): give a token, or -self")
    elif flags["accessor"]:
        if mode:
            raise UsageError(f"-accessor cannot be combined with -mode={mode}")
        path, body = "auth/token/revoke-accessor", {"accessor": token}
    elif mode == "orphan":
        path, body = "auth/token/revoke-orphan", {"token": token}
    elif mode == "path":
        path, body = f"sys/leases/revoke-prefix/{token.strip('/')}", {}
    else:
        path, body = "auth/token/revoke", {"token": token}
    with context.doing("revoking token"):
        context.client.write(path, body, method="POST")
    context.say("Success! Revoked token (if it existed)")
    return 0


field_flag = {"field": Flag("string", "print only this field: token, token_accessor, token_duration, ...")}

commands = [
    Command("token create", "", "Create a token, a child of the calling token unless -orphan.", create,
            {"policy": Flag("list", "a policy of the new token; repeat or comma-separate for more"),
             "ttl": Flag("string", "initial TTL (30m, 1h, or seconds)"),
             "explicit-max-ttl": Flag("string", "a TTL the token can never be renewed past"),
             "period": Flag("string", "make a periodic token, renewable by this much each time"),
             "orphan": Flag("bool", "create a token with no parent"),
             "display-name": Flag("string", "name to show for the token"),
             "num-uses": Flag("int", "uses before the token is revoked (0: unlimited)", 0),
             "renewable": Flag("bool", "whether the token may be renewed", True),
             "no-default-policy": Flag("bool", "leave out the default policy"),
             "metadata": Flag("map", "key=value metadata; repeat for more"),
             "id": Flag("string", "the token's value (root only)"),
             "type": Flag("string", "service or batch"),
             "role": Flag("string", "create against this token role"),
             **field_flag}),
    Command("token lookup", "[TOKEN]", "Show a token's properties (the calling token when none is given).",
            lookup, {"accessor": Flag("bool", "the argument is an accessor")}, arity=(0, 1)),
    Command("token renew", "[TOKEN]", "Renew a token's lease (the calling token when none is given).", renew,
            {"increment": Flag("string", "the TTL to ask for, from now (30m, 1h, or seconds)"),
             "accessor": Flag("bool", "the argument is an accessor"), **field_flag}, arity=(0, 1)),
    Command("token revoke", "[TOKEN]", "Revoke a token and, unless -mode=orphan, its children.", revoke,
            {"accessor": Flag("bool", "the argument is an accessor"),
             "self": Flag("bool", "revoke the calling token"),
             "mode": Flag("string", '"orphan": keep the children, as orphans; "path": revoke by path prefix')},
            arity=(0, 1)),
]
