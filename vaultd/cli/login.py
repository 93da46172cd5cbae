"""`vaultd login`: authenticate, keep the token in `$HOME/.vault-token` for later commands, and print it.

    vaultd login [TOKEN | -]                                       token: verified with lookup-self
    vaultd login -method=userpass username=U [password=P]          POST auth/<path>/login/<U> {"password"}
    vaultd login -method=approle role_id=R [secret_id=S]           POST auth/<path>/login {"role_id", "secret_id"}

`-path` names the auth mount (default: the method's name). Values take `k=@file` and `k=-` (stdin); a missing
token or password is asked for without echo on a terminal, or read as one line of stdin otherwise. As the Vault
CLI, a login by another method than token sends no calling token, and a token from the file or the environment is
never sent along. `-no-store` prints the token without writing the file.
"""

from collections.abc import Callable

from . import output
from .command import Command, Context, store_token
from .errors import CliError, UsageError
from .flags import Flag
from .kv import parse_data, sanitize
from .logical import show

stored_message = """\
Success! You are now authenticated. The token information displayed below
is already stored in the token helper. You do NOT need to run "vaultd login"
again. Future Vault requests will automatically use this token."""
not_stored_warning = """\
The token was not stored in token helper. Set the VAULT_TOKEN environment
variable or pass the token below with each request to Vault.
"""
environment_warning = """\
WARNING! The VAULT_TOKEN environment variable is set! The value of this
variable will take precedence; if this is unwanted please unset VAULT_TOKEN or
update its value accordingly.
"""


def login(context: Context) -> int:
    method = sanitize(context.flags["method"] or "token")
    authenticate = methods.get(method)
    if authenticate is None:
        raise CliError(f"Unknown auth method: {method}. This CLI logs in with: {', '.join(sorted(methods))}.")
    mount = sanitize(context.flags["path"] or method)
    words = list(context.args)
    if method == "token" and words and "=" not in words[0]:
        words[0] = f"token={words[0]}"  # `vaultd login TOKEN`, and `vaultd login -` for stdin
    config = {key: value.rstrip("\r\n") if isinstance(value, str) else value
              for key, value in parse_data(context, words).items()}
    if method != "token":
        context.client.token = ""
    secret = authenticate(context, mount, config)
    token = secret["auth"]["client_token"]
    if not context.flags["no-store"]:
        try:
            store_token(context.environ, token)
        except OSError as error:
            context.warn(f"Error storing token: {error}")
            context.warn("Authentication was successful, but the token was not persisted. The resulting token is "
                         "shown below for your records.\n")
            context.emit(secret, lambda: output.secret_table(secret))
            return CliError.exit_status
        if context.environ.get("VAULT_TOKEN"):
            context.warn(environment_warning)
    else:
        context.warn(not_stored_warning)
    if context.flags["field"]:
        return show(context, secret, context.flags["field"])
    if not context.json:
        context.say(("Success! You are now authenticated." if context.flags["no-store"] else stored_message) + "\n")
    return show(context, secret)


def _token(context: Context, mount: str, config: dict) -> dict:
    """Vault's token "login": look the token up, and dress the answer as an auth method's response."""
    token = str(config.get("token") or "").strip() or context.secret_input("Token (will be hidden): ")
    context.client.token = token
    with context.doing("authenticating: error looking up token"):
        reply = context.client.get("auth/token/lookup-self") or {}
    data = reply.get("data") or {}
    if not data:
        raise CliError("Error authenticating: empty response from lookup-self")
    policies = data.get("policies") or []
    auth = {"client_token": data.get("id") or token, "accessor": data.get("accessor") or "",
            "policies": policies, "token_policies": policies,
            "identity_policies": data.get("identity_policies") or [], "metadata": None,
            "orphan": bool(data.get("orphan")), "entity_id": data.get("entity_id") or "",
            "lease_duration": int(data.get("ttl") or 0), "renewable": bool(data.get("renewable"))}
    return {"request_id": reply.get("request_id") or "", "lease_id": "", "lease_duration": 0, "renewable": False,
            "data": None, "warnings": None, "auth": auth}


def _userpass(context: Context, mount: str, config: dict) -> dict:
    username = config.get("username") or context.environ.get("LOGNAME") or context.environ.get("USER")
    if not username:
        raise UsageError("'username' not supplied and neither 'LOGNAME' nor 'USER' env vars set")
    password = config.get("password")
    if password is None:
        password = context.secret_input("Password (will be hidden): ")
    return _login_request(context, f"auth/{mount}/login/{username}", {"password": password})


def _approle(context: Context, mount: str, config: dict) -> dict:
    if not config.get("role_id"):
        raise UsageError("'role_id' not supplied: give role_id=... and, unless the role binds none, secret_id=...")
    body = {"role_id": config["role_id"]}
    if "secret_id" in config:
        body["secret_id"] = config["secret_id"]
    return _login_request(context, f"auth/{mount}/login", body)


def _login_request(context: Context, path: str, body: dict) -> dict:
    with context.doing("authenticating"):
        reply = context.client.write(path, body, method="POST")
    if not reply or not (reply.get("auth") or {}).get("client_token"):
        raise CliError("Error authenticating: empty response from credential provider")
    return reply


methods: dict[str, Callable[[Context, str, dict], dict]] = {"token": _token, "userpass": _userpass,
                                                             "approle": _approle}

commands = [
    Command("login", "[TOKEN | K=V...]", "Authenticate (token, userpass or approle) and store the token.", login,
            {"method": Flag("string", "the auth method: token (default), userpass or approle"),
             "path": Flag("string", "the auth method's mount path (default: the method's name)"),
             "no-store": Flag("bool", "do not write the token to ~/.vault-token"),
             "field": Flag("string", "print only this field, e.g. token")},
            arity=(0, None)),
]
