"""`vaultd operator rekey`: replace the unseal key shares, given a quorum of the current ones
(sys/rekey/init, sys/rekey/update and sys/rekey/verify, vault_api.md §3.1-3.3).

    -init [-key-shares=5 -key-threshold=3] [-verify]   start; prints the operation's nonce
    -status | -cancel                                   the operation's progress, or drop it
    KEY -nonce=N                                        give one current share (prompted for when omitted)
    -verify with -status, -cancel or KEY                the same for the verification of the new shares
    -target=recovery with any of the above              the recovery keys of an auto seal instead
                                                        (sys/rekey-recovery-key/*, which behave alike)
"""

from . import output
from .command import Command, Context
from .errors import CliError, UsageError
from .flags import Flag

rekey_message = """\
Vault {key_type} keys rekeyed with {shares} key shares and a key threshold of {threshold}. Please securely
distribute the key shares printed above. When Vault is re-sealed, restarted, or stopped, you must supply
at least {threshold} of these keys to unseal it before it can start servicing requests."""

verification_message = """\
Vault has created a new {key_type} key, split into {shares} key shares and a key threshold of {threshold}.
These will not be active until after verification is complete. Please securely distribute the key shares
printed above. When Vault is re-sealed, restarted, or stopped, you must supply at least {threshold} of
these keys to unseal it before it can start servicing requests."""

# -target: Vault's names, "hsm" its old alias for "recovery", each to its API prefix and the keys it makes
targets = {"barrier": ("sys/rekey", "unseal"), "recovery": ("sys/rekey-recovery-key", "recovery"),
           "hsm": ("sys/rekey-recovery-key", "recovery")}


def status_table(status: dict) -> str:
    pairs = [("Nonce", status.get("nonce") or "n/a"), ("Started", output.go_value(bool(status.get("started"))))]
    if status.get("started"):
        progress = f"{status.get('progress', 0)}/{status.get('required', 0)}"
        if status.get("progress") and status.get("progress") == status.get("required"):
            progress += " (verification in progress)"
        pairs += [
            ("Rekey Progress", progress),
            ("New Shares", str(status.get("n", 0))),
            ("New Threshold", str(status.get("t", 0))),
            ("Verification Required", output.go_value(bool(status.get("verification_required")))),
        ]
        if status.get("verification_nonce"):
            pairs.append(("Verification Nonce", status["verification_nonce"]))
    return output.key_value_table(pairs)


def verification_table(status: dict) -> str:
    return output.key_value_table([
        ("Started", output.go_value(bool(status.get("started")))),
        ("New Shares", str(status.get("n", 0))),
        ("New Threshold", str(status.get("t", 0))),
        ("Verification Nonce", status.get("nonce") or "n/a"),
        ("Verification Progress", f"{status.get('progress', 0)}/{status.get('t', 0)}"),
    ])


def rekey(context: Context) -> int:
    flags = context.flags
    chosen = [name for name in ("init", "cancel", "status") if flags[name]]
    if len(chosen) > 1:
        raise UsageError(f"give only one of -{', -'.join(chosen)}")
    if chosen and context.args:
        raise UsageError(f"-{chosen[0]} takes no key share argument")
    _target(context)  # a bad -target is refused before anything is sent
    if flags["init"]:
        return _init(context)
    if flags["cancel"]:
        return _cancel(context)
    if flags["status"]:
        return _status(context)
    return _provide(context)


def _target(context: Context) -> tuple[str, str]:
    """The API prefix of -target and the kind of keys it rekeys ("unseal" or "recovery")."""
    name = (context.flags["target"] or "barrier").strip().lower()
    if name not in targets:
        raise UsageError(f"Unknown target: {context.flags['target']} (want barrier or recovery)")
    return targets[name]


def _path(context: Context) -> str:
    prefix, _ = _target(context)
    return f"{prefix}/verify" if context.flags["verify"] else f"{prefix}/init"


def _read_status(context: Context) -> dict:
    with context.doing("reading rekey status"):
        return context.client.get(_path(context)) or {}


def _show_status(context: Context, status: dict) -> None:
    table = verification_table if context.flags["verify"] else status_table
    context.emit(status, lambda: table(status))


def _init(context: Context) -> int:
    body = {"secret_shares": context.flags["key-shares"], "secret_threshold": context.flags["key-threshold"],
            "require_verification": bool(context.flags["verify"])}
    with context.doing("initializing rekey"):
        status = context.client.write(f"{_target(context)[0]}/init", body) or {}
    context.emit(status, lambda: status_table(status))
    return 0


def _cancel(context: Context) -> int:
    with context.doing("canceling rekey"):
        context.client.delete(_path(context))
    what = "rekey verification" if context.flags["verify"] else "rekeying"
    context.say(f"Success! Canceled {what} (if it was started)")
    return 0


def _status(context: Context) -> int:
    _show_status(context, _read_status(context))
    return 0


def _provide(context: Context) -> int:
    status = _read_status(context)
    prefix, key_type = _target(context)
    if not status.get("started") and not context.flags["verify"]:
        target = "" if key_type == "unseal" else " -target=recovery"
        raise CliError(f'Error: no rekey is in progress; start one with "vaultd operator rekey -init{target}"')
    label = "Verification nonce" if context.flags["verify"] else "Rekey operation nonce"
    key, nonce = context.key_and_nonce(status, label, "Key (will be hidden): ")
    update_path = f"{prefix}/verify" if context.flags["verify"] else f"{prefix}/update"
    with context.doing("posting unseal key"):
        reply = context.client.write(update_path, {"key": key, "nonce": nonce}) or {}
    if not reply.get("complete"):
        _show_status(context, _read_status(context))
        return 0
    if context.flags["verify"]:
        context.emit(reply, lambda: "Success! Rekey verification was successful. The rekey operation is complete "
                                    "and the new keys are now active.")
        return 0
    context.emit(reply, lambda: _new_keys_text(reply, status, key_type))
    return 0


def _new_keys_text(reply: dict, status: dict, key_type: str) -> str:
    keys = reply.get("keys_base64") or reply.get("keys") or []
    lines = [f"Key {number}: {key}" for number, key in enumerate(keys, start=1)]
    lines += ["", f"Operation nonce: {reply.get('nonce', '')}", ""]
    shares, threshold = status.get("n", len(keys)), status.get("t", 0)
    if reply.get("verification_required"):
        lines.append(verification_message.format(key_type=key_type, shares=shares, threshold=threshold))
        lines += ["", f"Verification nonce: {reply.get('verification_nonce', '')}"]
    else:
        lines.append(rekey_message.format(key_type=key_type, shares=shares, threshold=threshold))
    return "\n".join(lines)


command = Command(
    "operator rekey", "[KEY]", "Replace the unseal (or recovery) key shares, given a quorum of the current ones.",
    rekey,
    {"init": Flag("bool", "start a rekey operation"),
     "cancel": Flag("bool", "cancel the rekey operation in progress"),
     "status": Flag("bool", "show the progress of the rekey operation"),
     "key-shares": Flag("int", "number of new key shares (with -init)", 5),
     "key-threshold": Flag("int", "number of new key shares required to unseal (with -init)", 3),
     "nonce": Flag("string", "the operation's nonce, required with a KEY argument"),
     "verify": Flag("bool", "with -init: require verification of the new shares; else act on the verification"),
     "target": Flag("string", 'the keys to rekey: "barrier" (the unseal keys) or "recovery" (the recovery keys of '
                    'an auto seal such as pkcs11)', "barrier")},
    arity=(0, 1),
)
