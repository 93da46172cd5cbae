"""`vaultd unwrap [TOKEN]`: redeem a wrapping token at sys/wrapping/unwrap (vault_api.md §6.3) and print the
response it held, as `vault unwrap` does.

Which token goes where follows Vault's client: with no calling token, the wrapping token is the request's
`X-Vault-Token`; with a different calling token it goes in the body as `{"token": ...}`; with no argument the
calling token (VAULT_TOKEN) is itself the wrapping token. The server honours a token once: the second unwrap
fails with its "wrapping token is not valid or does not exist".
"""

from .command import Command, Context
from .errors import NotFound, UsageError
from .logical import field_flag, show, show_keys


def unwrap(context: Context) -> int:
    token = context.args[0].strip() if context.args else ""
    client = context.client
    body: dict = {}
    if token and not client.token:
        client.token = token
    elif token and token != client.token:
        body = {"token": token}
    if not client.token:
        raise UsageError("give the wrapping token as the argument, or as VAULT_TOKEN")
    with context.doing("unwrapping"):
        reply = client.write("sys/wrapping/unwrap", body)
    if not reply:
        raise NotFound("Could not find wrapped response")
    if context.flags["field"]:
        return show(context, reply, context.flags["field"])
    keys = (reply.get("data") or {}).get("keys")
    if isinstance(keys, list):  # a wrapped LIST prints as a list
        show_keys(context, reply, keys)
        return 0
    return show(context, reply)


commands = [
    Command("unwrap", "[TOKEN]", "Unwrap a wrapped response (the calling token's when no TOKEN is given).", unwrap,
            field_flag, arity=(0, 1)),
]
