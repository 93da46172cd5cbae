"""`vaultd operator generate-root`: make a new root token from a quorum of unseal key shares
(sys/generate-root/attempt and sys/generate-root/update, vault_api.md §3.5-3.6).

    -generate-otp                 print a one-time password of the length the server wants
    -init [-otp=OTP]              start; without -otp the server makes the OTP and returns it once
    -status | -cancel             the operation's progress, or drop it
    KEY -nonce=N                  give one unseal key share (prompted for when omitted)
    -decode=ENCODED -otp=OTP      turn the encoded token of the last share into the root token

The encoded token is base64 (unpadded) of the token XOR the OTP; servers before OTP lengths used a base64 OTP
and a UUID token, which `decode_root_token` also reads.
"""

import base64
import binascii
import secrets
import string
import uuid

from . import output
from .command import Command, Context
from .errors import CliError, UsageError
from .flags import Flag

otp_alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase  # Vault's base62
legacy_token_bytes = 16  # a UUID


def decode_root_token(encoded: str, otp: str) -> str:
    raw = _base64(encoded.strip())
    otp_bytes = otp.strip().encode()
    if raw is not None and len(raw) == len(otp_bytes):
        token = bytes(a ^ b for a, b in zip(raw, otp_bytes, strict=True))
        if token.isascii() and token.decode().isprintable():
            return token.decode()
        raise CliError("Error decoding root token: this OTP does not decode this token")
    legacy_otp = _base64(otp.strip())
    if raw is not None and legacy_otp is not None and len(raw) == len(legacy_otp) == legacy_token_bytes:
        return str(uuid.UUID(bytes=bytes(a ^ b for a, b in zip(raw, legacy_otp, strict=True))))
    raise CliError("Error decoding root token: the OTP and the encoded token differ in length")


def _base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def status_table(status: dict) -> str:
    rows = [
        ["Nonce", status.get("nonce") or "n/a"],
        ["Started", output.go_value(bool(status.get("started")))],
        ["Progress", f"{status.get('progress', 0)}/{status.get('required', 0)}"],
        ["Complete", output.go_value(bool(status.get("complete")))],
    ]
    if status.get("pgp_fingerprint"):
        rows.append(["PGP Fingerprint", status["pgp_fingerprint"]])
    if status.get("encoded_token"):
        rows.append(["Encoded Token", status["encoded_token"]])
    elif status.get("encoded_root_token"):
        rows.append(["Encoded Root Token", status["encoded_root_token"]])
    if status.get("otp"):
        rows.append(["OTP", status["otp"]])
    if status.get("otp_length"):
        rows.append(["OTP Length", str(status["otp_length"])])
    return output.aligned(rows)


def generate_root(context: Context) -> int:
    flags = context.flags
    chosen = [name for name in ("generate-otp", "init", "cancel", "status") if flags[name]]
    chosen += ["decode"] if flags["decode"] else []
    if len(chosen) > 1:
        raise UsageError(f"give only one of -{', -'.join(chosen)}")
    if chosen and context.args:
        raise UsageError(f"-{chosen[0]} takes no key share argument")
    action = chosen[0] if chosen else "provide"
    return {"generate-otp": _generate_otp, "init": _init, "cancel": _cancel, "status": _status,
            "decode": _decode, "provide": _provide}[action](context)


def _read_status(context: Context) -> dict:
    with context.doing("getting root generation status"):
        return context.client.get("sys/generate-root/attempt") or {}


def _show(context: Context, status: dict) -> None:
    if status.get("otp") and not context.json:
        context.warn("A One-Time-Password has been generated for you and is shown in the OTP field. You will need "
                     "this value to decode the resulting root token, so keep it safe.")
    context.emit(status, lambda: status_table(status))


def _generate_otp(context: Context) -> int:
    length = _read_status(context).get("otp_length") or 0
    if length <= 0:
        raise CliError("Error generating OTP: the server reports an OTP length of 0")
    otp = "".join(secrets.choice(otp_alphabet) for _ in range(length))
    context.say(output.to_json({"otp": otp, "otp_length": length}) if context.json else otp)
    return 0


def _init(context: Context) -> int:
    body = {"otp": context.flags["otp"]} if context.flags["otp"] else {}
    with context.doing("initializing root generation"):
        status = context.client.write("sys/generate-root/attempt", body) or {}
    _show(context, status)
    return 0


def _cancel(context: Context) -> int:
    with context.doing("canceling root token generation"):
        context.client.delete("sys/generate-root/attempt")
    context.say("Success! Root token generation canceled (if it was started)")
    return 0


def _status(context: Context) -> int:
    _show(context, _read_status(context))
    return 0


def _decode(context: Context) -> int:
    encoded, otp = context.flags["decode"], context.flags["otp"]
    if not otp:
        raise UsageError("Missing otp: use -otp to supply it")
    if encoded == "-":
        encoded = context.read_all_stdin("encoded token")
    token = decode_root_token(encoded, otp)
    context.say(output.to_json({"token": token}) if context.json else token)
    return 0


def _provide(context: Context) -> int:
    status = _read_status(context)
    if not status.get("started"):
        raise CliError('Error: no root generation is in progress; start one with '
                       '"vaultd operator generate-root -init"')
    key, nonce = context.key_and_nonce(status, "Operation nonce", "Unseal Key (will be hidden): ")
    with context.doing("posting unseal key"):
        status = context.client.write("sys/generate-root/update", {"key": key, "nonce": nonce}) or {}
    _show(context, status)
    return 0


command = Command(
    "operator generate-root", "[KEY]", "Generate a new root token from a quorum of unseal key shares.",
    generate_root,
    {"init": Flag("bool", "start a root token generation"),
     "cancel": Flag("bool", "cancel the root token generation in progress"),
     "status": Flag("bool", "show the progress of the root token generation"),
     "generate-otp": Flag("bool", "print a one-time password of the length the server wants"),
     "otp": Flag("string", "the one-time password, with -init or -decode"),
     "decode": Flag("string", "decode this encoded token (\"-\": from stdin) with -otp"),
     "nonce": Flag("string", "the operation's nonce, required with a KEY argument")},
    arity=(0, 1),
)
