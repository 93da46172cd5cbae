"""Userpass (Vault's builtin/credential/userpass): a person logs in with a username and a password.

Paths: users/ (LIST), users/<username> (create, read, update, delete), users/<username>/password,
users/<username>/policies and login/<username>. Usernames are lower-cased on every path.

Storage layout: `user/<username>` holds a User as UTF-8 JSON: its token settings, and its password as an
scrypt hash with the parameters that made it, {"algorithm": "scrypt", "n", "r", "p", "salt", "hash"} (bytes in
hex). The password itself is stored nowhere. A login does the same scrypt work whether or not the user exists,
and answers "invalid username or password" either way, so neither the answer nor its timing tells who exists.
"""

import asyncio
import dataclasses
import hmac
import json
import os

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from vaultd.sdk import errors
from vaultd.sdk.backend import Backend
from vaultd.sdk.path import Field, FieldData, FieldType, Path
from vaultd.sdk.request import Operation, Request, Response
from vaultd.sdk.storage import StorageView

from . import token_fields as tokens

# scrypt's cost parameters (RFC 7914): about 16 MiB and tens of milliseconds per hash on one core.
scrypt_n = 2**14
scrypt_r = 8
scrypt_p = 1
salt_bytes = 16
hash_bytes = 32
invalid_credentials = "invalid username or password"
_name = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"  # Vault's GenericNameRegex; Go's \w is ASCII

assert scrypt_n > 1 and scrypt_n & (scrypt_n - 1) == 0, "scrypt's n must be a power of two"
assert salt_bytes >= 16 and hash_bytes >= 32
# What a missing user's password is checked against: the same parameters, so the same work. Nothing a login
# sends derives to all zeros, bar a 2**-256 chance, and a missing user is refused whatever it derives to.
_absent_user_password = {
    "algorithm": "scrypt", "n": scrypt_n, "r": scrypt_r, "p": scrypt_p,
    "salt": bytes(salt_bytes).hex(), "hash": bytes(hash_bytes).hex(),
}

_username = {"username": Field(FieldType.STRING, "The user's name; lower-cased.", required=True)}
_password = {"password": Field(FieldType.STRING, "The user's password.")}
_user_fields = {**_username, **_password, **tokens.token_fields("policies", "ttl", "max_ttl", "bound_cidrs")}
_policies_fields = {
    **_username,
    **{name: field for name, field in tokens.token_fields("policies").items() if name.endswith("policies")},
}


def userpass_backend() -> Backend:
    read, create, update, delete, list_ = (
        Operation.READ, Operation.CREATE, Operation.UPDATE, Operation.DELETE, Operation.LIST,
    )
    user = f"users/(?P<username>{_name})"
    return Backend([
        Path(r"users/?", {}, {list_: list_users}, help="List the users."),
        Path(user, _user_fields, {read: read_user, create: write_user, update: write_user, delete: delete_user},
             existence_check=user_exists, help="Create, read, update or delete a user."),
        Path(user + "/password", {**_username, **_password}, {update: write_password}, help="Reset a password."),
        Path(user + "/policies", _policies_fields, {update: write_policies}, help="Set a user's policies."),
        Path(f"login/(?P<username>{_name})", {**_username, **_password}, {update: login},
             help="Log in with a username and a password."),
    ], help="Userpass: people log in with a username and a password.")


@dataclasses.dataclass
class User:
    password: dict  # the scrypt hash and its parameters; see the module docstring
    token: tokens.TokenSettings

    @classmethod
    def decode(cls, raw: bytes) -> "User":
        record = json.loads(raw)
        return cls(password=record["password"], token=tokens.TokenSettings(**record["token"]))


async def user_exists(request: Request, fields: FieldData) -> bool:
    return await _load_user(request.storage, _username_of(fields)) is not None


async def list_users(request: Request, fields: FieldData) -> Response:
    names = await request.storage.list("user/")
    if not names:
        raise errors.NotFound()
    return Response(data={"keys": names})


async def read_user(request: Request, fields: FieldData) -> Response | None:
    """The token fields and the mirrored legacy ones, as Vault's pathUserRead; never the password."""
    user = await _load_user(request.storage, _username_of(fields))
    return None if user is None else Response(data=tokens.token_data(user.token))


async def write_user(request: Request, fields: FieldData) -> Response | None:
    """Vault's pathUserWrite: a new user needs a password; every value is checked before the hash is made."""
    username, password = _username_of(fields), fields.get("password")
    current = await _load_user(request.storage, username)
    if (current is None or password is not None) and not password:
        raise errors.InvalidRequest("missing password")
    token, warnings = tokens.parse_token_settings(fields, current.token if current else tokens.TokenSettings())
    hashed = await hash_password(password) if password else current.password
    await _save_user(request.storage, username, User(password=hashed, token=token))
    return Response(warnings=warnings) if warnings else None


async def delete_user(request: Request, fields: FieldData) -> None:
    await request.storage.delete("user/" + _username_of(fields))


async def write_password(request: Request, fields: FieldData) -> None:
    username = _username_of(fields)
    user = await _existing_user(request.storage, username)
    password = fields.get("password") or ""
    if not password:
        raise errors.InvalidRequest("missing password")
    user.password = await hash_password(password)
    await _save_user(request.storage, username, user)


async def write_policies(request: Request, fields: FieldData) -> None:
    """Vault's pathUserPoliciesUpdate: token_policies (or the legacy policies), each parsed as Vault parses
    policy names."""
    username = _username_of(fields)
    user = await _existing_user(request.storage, username)
    user.token, _ = tokens.parse_token_settings(fields, user.token)
    if fields.provided("token_policies"):
        user.token.token_policies = tokens.sanitize_policies(user.token.token_policies)
    await _save_user(request.storage, username, user)


async def login(request: Request, fields: FieldData) -> Response:
    """Vault's pathLogin. A missing user costs the same scrypt work as a wrong password and gets the same
    answer; a user bound to token_bound_cidrs logs in only from inside them (PermissionDenied otherwise)."""
    username, password = _username_of(fields), fields.get("password") or ""
    if not password:
        raise errors.InvalidRequest("missing password")
    user = await _load_user(request.storage, username)
    matches = await password_matches(password, user.password if user is not None else _absent_user_password)
    if user is None or not matches:
        raise errors.InvalidRequest(invalid_credentials)
    bound = user.token.token_bound_cidrs
    if bound and tokens.source_allowed(request, bound) is not True:
        raise errors.PermissionDenied()
    name = tokens.display_name(request, "userpass", username)
    return Response(auth=tokens.auth_spec(user.token, {"username": username}, name))


async def hash_password(password: str) -> dict:
    """A fresh salt and the scrypt hash, with its parameters. The work runs off the event loop."""
    params = {"algorithm": "scrypt", "n": scrypt_n, "r": scrypt_r, "p": scrypt_p, "salt": os.urandom(salt_bytes).hex()}
    derived = await asyncio.to_thread(_derive, password, params, hash_bytes)
    return {**params, "hash": derived.hex()}


async def password_matches(password: str, stored: dict) -> bool:
    """Derive with the stored parameters and compare in constant time."""
    expected = bytes.fromhex(stored["hash"])
    derived = await asyncio.to_thread(_derive, password, stored, len(expected))
    return hmac.compare_digest(derived, expected)


def _derive(password: str, params: dict, length: int) -> bytes:
    if params["algorithm"] != "scrypt":
        raise errors.InternalError(f"unknown password hash algorithm {params['algorithm']!r}")
    kdf = Scrypt(salt=bytes.fromhex(params["salt"]), length=length, n=params["n"], r=params["r"], p=params["p"])
    return kdf.derive(password.encode("utf-8", "surrogatepass"))


def _username_of(fields: FieldData) -> str:
    return fields.get("username").lower()


async def _load_user(storage: StorageView, username: str) -> User | None:
    raw = await storage.get("user/" + username)
    return None if raw is None else User.decode(raw)


async def _existing_user(storage: StorageView, username: str) -> User:
    user = await _load_user(storage, username)
    if user is None:
        raise errors.InvalidRequest("username does not exist")
    return user


async def _save_user(storage: StorageView, username: str, user: User) -> None:
    await storage.put("user/" + username, json.dumps(dataclasses.asdict(user), sort_keys=True).encode())
