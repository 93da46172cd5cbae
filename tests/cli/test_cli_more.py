"""The generic CLI commands (`read`, `write`, `delete`, `list`), response wrapping (`-wrap-ttl`, `unwrap`) and
`login` drive a real vaultd as an operator's shell would.

Each test runs `vaultd.cli.main` in a subprocess against the `dev_server` fixture of tests/http (root token, KV v2
at secret/) and asserts the effect a later command, or the token helper file under a temporary HOME, then sees.
The userpass, approle and transit tests first enable their backend with `vaultd write sys/auth/<type>` (or
`sys/mounts/transit`) and skip, saying why, while the server answers 400 "plugin not found" there.
"""

import base64
import json
import os
import stat
import subprocess
import sys

import pytest

from tests.cli.test_cli import ROOT, Run, cli_timeout_seconds, table
from tests.http import conftest as http_fixtures

dev_server = http_fixtures.dev_server
_entry = "import sys; from vaultd.cli import main; sys.exit(main(sys.argv[1:]))"


def vaultd(node, *args: str, token: str | None = None, stdin: str = "", home=os.devnull) -> Run:
    """`vaultd ARGS` against `node`: the root token unless `token` is given, none at all for `token=""` (then
    the client falls back on $HOME/.vault-token); HOME is `home`, by default a path with no token file."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("VAULT_")}
    environ.update(PYTHONPATH=str(ROOT), VAULT_ADDR=node.url if node is not None else "http://127.0.0.1:9",
                   HOME=str(home))
    token = (node.root_token if node is not None else "") if token is None else token
    if token:
        environ["VAULT_TOKEN"] = token
    completed = subprocess.run([sys.executable, "-c", _entry, *args], input=stdin, capture_output=True, text=True,
                               env=environ, timeout=cli_timeout_seconds, cwd=ROOT)
    return Run(completed.returncode, completed.stdout, completed.stderr)


def ok(node, *args: str, **options) -> Run:
    run = vaultd(node, *args, **options)
    assert run.code == 0, f"vaultd {' '.join(args)} exited {run.code}: {run.err}"
    return run


def enable_or_skip(node, path: str, backend_type: str) -> None:
    """`vaultd write sys/auth/userpass type=userpass` (or sys/mounts/...); skip while the server lacks the type."""
    run = vaultd(node, "write", path, f"type={backend_type}")
    if run.code != 0 and "plugin not found" in run.err and "HTTP 400" in run.err:
        pytest.skip(f"the server has no {backend_type} backend yet: {run.err.strip()}")
    assert run.code == 0, run.err


def token_file(home) -> str:
    return (home / ".vault-token").read_text()


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    path.mkdir()
    return path


# --- read, write, delete, list ------------------------------------------------------------------------------------


def test_generic_write_read_list_delete_round_trip_on_kv_v2(dev_server):
    written = ok(dev_server, "write", "secret/data/app/db", "-", stdin='{"data": {"user": "alice", "port": 5432}}')
    assert table(written.out)["version"] == "1" and table(written.out)["destroyed"] == "false"
    read = ok(dev_server, "read", "-format=json", "secret/data/app/db").json()
    assert read["data"]["data"] == {"user": "alice", "port": 5432} and read["data"]["metadata"]["version"] == 1
    shown = table(ok(dev_server, "read", "secret/data/app/db").out)
    assert shown["data"] == "map[port:5432 user:alice]" and "version:1" in shown["metadata"]
    assert json.loads(ok(dev_server, "read", "-field=data", "secret/data/app/db").out) == read["data"]["data"]
    assert ok(dev_server, "read", "-field=request_id", "secret/data/app/db").out.strip() != ""
    assert ok(dev_server, "kv", "get", "-field=user", "secret/app/db").out == "alice\n"  # the same secret
    ok(dev_server, "write", "secret/data/app/api", "-", stdin='{"data": {"k": "v"}}')
    first = ok(dev_server, "read", "-format=json", "secret/data/app/db", "version=1").json()  # a query parameter
    assert first["data"]["metadata"]["version"] == 1
    assert ok(dev_server, "list", "secret/metadata/app").out.split() == ["Keys", "----", "api", "db"]
    assert ok(dev_server, "list", "-format=json", "secret/metadata/").json() == ["app/"]

    deleted = ok(dev_server, "delete", "secret/data/app/db")
    assert deleted.out.strip() == "Success! Data deleted (if it existed) at: secret/data/app/db"
    soft = ok(dev_server, "read", "-format=json", "secret/data/app/db").json()["data"]  # KV v2: 404 with metadata
    assert soft["data"] is None and soft["metadata"]["deletion_time"] != ""
    ok(dev_server, "delete", "secret/metadata/app/db")
    gone = vaultd(dev_server, "read", "secret/data/app/db")
    assert gone.code == 2 and gone.err.strip() == "No value found at secret/data/app/db"
    assert ok(dev_server, "list", "-format=json", "secret/metadata/app").json() == ["api"]


def test_generic_write_takes_files_stdin_and_force_and_reports_failures(dev_server, tmp_path):
    ok(dev_server, "secrets", "enable", "-path=legacy", "kv")
    (tmp_path / "cert.pem").write_text("-----BEGIN-----\n")
    written = ok(dev_server, "write", "legacy/cfg", f"cert=@{tmp_path / 'cert.pem'}", "token=-", "mode=plain",
                 stdin="s3cret\n")
    assert written.out.strip() == "Success! Data written to: legacy/cfg"  # KV v1 answers 204
    assert ok(dev_server, "read", "-format=json", "legacy/cfg").json()["data"] == {
        "cert": "-----BEGIN-----\n", "token": "s3cret\n", "mode": "plain"}
    assert table(ok(dev_server, "read", "legacy/cfg").out)["refresh_interval"] == "768h"
    assert ok(dev_server, "write", "-format=json", "legacy/quiet", "k=v").out == ""  # Vault prints nothing then
    absent = vaultd(dev_server, "read", "-field=nope", "legacy/cfg")
    assert absent.code == 1 and absent.err.strip() == 'Field "nope" not present in secret'

    no_data = vaultd(dev_server, "write", "sys/rotate")
    assert no_data.code == 2 and "Error: Must supply data or use -force" in no_data.err
    assert ok(dev_server, "write", "-force", "sys/rotate").out.strip() == "Success! Data written to: sys/rotate"
    refused = vaultd(dev_server, "write", "secret/data/x", "data=not-an-object")
    assert refused.code == 1 and refused.err.startswith("Error writing data to secret/data/x: ")
    assert "HTTP 400" in refused.err
    denied = vaultd(dev_server, "read", "secret/data/x", token="hvs.not-a-token")
    assert denied.code == 1 and "Error reading secret/data/x: permission denied" in denied.err
    empty = vaultd(dev_server, "list", "secret/metadata/nothing")
    assert empty.code == 2 and empty.err.strip() == "No value found at secret/metadata/nothing/"
    empty_json = vaultd(dev_server, "list", "-format=json", "secret/metadata/nothing")
    assert empty_json.code == 2 and empty_json.out.strip() == "{}"


# --- response wrapping ------------------------------------------------------------------------------------------


def test_wrap_ttl_then_unwrap_returns_the_data_once(dev_server):
    ok(dev_server, "write", "secret/data/shh", "-", stdin='{"data": {"pin": "1234"}}')
    wrapped = ok(dev_server, "read", "-wrap-ttl=5m", "secret/data/shh").out
    rows = table(wrapped)
    assert list(rows)[2:] == ["wrapping_token:", "wrapping_accessor:", "wrapping_token_ttl:",
                              "wrapping_token_creation_time:", "wrapping_token_creation_path:"]
    assert rows["wrapping_token_ttl:"] == "5m" and rows["wrapping_token_creation_path:"] == "secret/data/shh"
    assert rows["wrapping_token_creation_time:"].endswith(" +0000 UTC") and "1234" not in wrapped
    token = rows["wrapping_token:"]

    unwrapped = ok(dev_server, "unwrap", "-format=json", token).json()  # root calls; the token goes in the body
    assert unwrapped["data"]["data"] == {"pin": "1234"} and unwrapped["data"]["metadata"]["version"] == 1
    again = vaultd(dev_server, "unwrap", token)
    assert again.code == 1
    assert again.err.startswith("Error unwrapping: wrapping token is not valid or does not exist (HTTP 400")

    # The wrapping token as the calling token (VAULT_TOKEN), and -field on both sides.
    token = ok(dev_server, "read", "-wrap-ttl=60", "-field=wrapping_token", "secret/data/shh").out.strip()
    assert ok(dev_server, "unwrap", "-field=data", token=token).out == '{"pin": "1234"}\n'
    assert vaultd(dev_server, "unwrap", "-field=data", token=token).code == 1


def test_wrap_ttl_on_write_and_list_and_its_refusals(dev_server):
    wrapped = ok(dev_server, "write", "-wrap-ttl=2m", "-format=json", "sys/wrapping/wrap", "a=b").json()["wrap_info"]
    assert (wrapped["ttl"], wrapped["creation_path"]) == (120, "sys/wrapping/wrap")
    assert table(ok(dev_server, "unwrap", wrapped["token"]).out)["a"] == "b"

    ok(dev_server, "write", "secret/data/team/one", "-", stdin='{"data": {"k": "v"}}')
    listed = table(ok(dev_server, "list", "-wrap-ttl=1m", "secret/metadata/team").out)
    assert listed["wrapping_token_creation_path:"] == "secret/metadata/team/"
    assert ok(dev_server, "unwrap", listed["wrapping_token:"]).out.split() == ["Keys", "----", "one"]

    negative = vaultd(dev_server, "read", "-wrap-ttl=-5s", "secret/data/team/one")
    assert negative.code == 1 and "requested wrap ttl cannot be negative" in negative.err
    not_wrapped = vaultd(dev_server, "write", "sys/wrapping/wrap", "a=b")
    assert not_wrapped.code == 1 and "endpoint requires response wrapping to be used" in not_wrapped.err
    nothing = vaultd(dev_server, "unwrap", token="")
    assert nothing.code == 2 and "give the wrapping token as the argument, or as VAULT_TOKEN" in nothing.err


# --- login ------------------------------------------------------------------------------------------------------


def test_login_with_a_token_stores_it_for_later_commands(dev_server, home):
    child = ok(dev_server, "token", "create", "-policy=default", "-ttl=1h", "-field=token").out.strip()
    logged_in = ok(dev_server, "login", child, token="", home=home)
    assert logged_in.out.startswith("Success! You are now authenticated. The token information displayed below\n")
    rows = table(logged_in.out)
    assert (rows["token"], rows["token_policies"], rows["policies"], rows["token_renewable"]) == (
        child, '["default"]', '["default"]', "true")
    assert token_file(home) == child and stat.S_IMODE((home / ".vault-token").stat().st_mode) == 0o600
    assert "VAULT_TOKEN" not in logged_in.err
    looked_up = ok(dev_server, "token", "lookup", "-format=json", token="", home=home).json()["data"]
    assert looked_up["id"] == child  # the client sent the stored token

    not_stored = ok(dev_server, "login", "-no-store", "-", token="", home=home, stdin=dev_server.root_token + "\n")
    assert "The token was not stored" in not_stored.err and table(not_stored.out)["token"] == dev_server.root_token
    assert token_file(home) == child
    bad = vaultd(dev_server, "login", "hvs.not-a-token", token="", home=home)
    assert bad.code == 1 and bad.err.startswith("Error authenticating: error looking up token: permission denied")
    assert token_file(home) == child

    as_json = ok(dev_server, "login", "-format=json", dev_server.root_token, home=home)  # VAULT_TOKEN is set too
    assert as_json.json()["auth"]["client_token"] == dev_server.root_token and "Success!" not in as_json.out
    assert "WARNING! The VAULT_TOKEN environment variable is set!" in as_json.err
    assert token_file(home) == dev_server.root_token
    prompted = ok(dev_server, "login", "-field=token", token="", home=home, stdin=child + "\n")  # no TOKEN: asked
    assert prompted.out == child + "\n" and token_file(home) == child


def test_login_refusals(dev_server):
    unstorable = vaultd(dev_server, "login", dev_server.root_token)  # HOME is /dev/null: no file can go there
    assert unstorable.code == 1 and unstorable.err.startswith("Error storing token: ")
    assert table(unstorable.out)["token"] == dev_server.root_token  # shown for the record, as Vault does
    unknown = vaultd(dev_server, "login", "-method=github", "token=x")
    assert unknown.code == 1 and unknown.err.startswith("Unknown auth method: github.")
    no_role = vaultd(dev_server, "login", "-method=approle", "secret_id=x")
    assert no_role.code == 2 and "'role_id' not supplied" in no_role.err


def test_userpass_login_stores_the_token(dev_server, home):
    enable_or_skip(dev_server, "sys/auth/userpass", "userpass")
    ok(dev_server, "write", "auth/userpass/users/bob", "password=hunter2", "token_policies=default")
    logged_in = ok(dev_server, "login", "-method=userpass", "username=bob", "password=hunter2", token="", home=home)
    token = table(logged_in.out)["token"]
    assert logged_in.out.startswith("Success! You are now authenticated.") and token_file(home) == token
    assert '"default"' in table(logged_in.out)["policies"]
    assert ok(dev_server, "token", "lookup", "-format=json", token="", home=home).json()["data"]["id"] == token

    prompted = ok(dev_server, "login", "-method=userpass", "-no-store", "-format=json", "username=bob",
                  token="", home=home, stdin="hunter2\n")  # the password from stdin, not a terminal
    assert prompted.json()["auth"]["metadata"]["username"] == "bob" and token_file(home) == token
    wrong = vaultd(dev_server, "login", "-method=userpass", "username=bob", "password=nope", token="", home=home)
    assert wrong.code == 1 and "invalid username or password" in wrong.err and token_file(home) == token

    enable_or_skip(dev_server, "sys/auth/people", "userpass")
    ok(dev_server, "write", "auth/people/users/carol", "password=pw")
    elsewhere = ok(dev_server, "login", "-method=userpass", "-path=people", "-field=token", "username=carol",
                   "password=pw", token="", home=home)
    assert token_file(home) == elsewhere.out.strip() != token


def test_approle_login_stores_the_token(dev_server, home):
    enable_or_skip(dev_server, "sys/auth/approle", "approle")
    ok(dev_server, "write", "auth/approle/role/ci", "token_policies=default")
    role_id = ok(dev_server, "read", "-field=role_id", "auth/approle/role/ci/role-id").out.strip()
    secret_id = ok(dev_server, "write", "-f", "-field=secret_id", "auth/approle/role/ci/secret-id").out.strip()
    assert role_id and secret_id
    logged_in = ok(dev_server, "login", "-method=approle", f"role_id={role_id}", f"secret_id={secret_id}",
                   token="", home=home)
    token = table(logged_in.out)["token"]
    assert token_file(home) == token and table(logged_in.out)["token_meta_role_name"] == "ci"
    assert ok(dev_server, "token", "lookup", "-format=json", token="", home=home).json()["data"]["id"] == token
    wrong = vaultd(dev_server, "login", "-method=approle", f"role_id={role_id}", "secret_id=wrong", token="",
                   home=home)
    assert wrong.code == 1 and "invalid role or secret ID" in wrong.err and token_file(home) == token


# --- transit through the generic commands -----------------------------------------------------------------------


def test_transit_encrypt_then_decrypt_with_write(dev_server):
    enable_or_skip(dev_server, "sys/mounts/transit", "transit")
    ok(dev_server, "write", "-f", "transit/keys/k")
    plaintext = base64.b64encode(b"hi\n").decode()  # what $(base64 <<< hi) gives a shell
    encrypted = table(ok(dev_server, "write", "transit/encrypt/k", f"plaintext={plaintext}").out)
    assert encrypted["ciphertext"].startswith("vault:v1:") and encrypted["key_version"] == "1"
    decrypted = ok(dev_server, "write", "-field=plaintext", "transit/decrypt/k",
                   f"ciphertext={encrypted['ciphertext']}").out.strip()
    assert base64.b64decode(decrypted) == b"hi\n"
    tampered = vaultd(dev_server, "write", "transit/decrypt/k", "ciphertext=vault:v1:AAAA")
    assert tampered.code == 1 and tampered.err.startswith("Error writing data to transit/decrypt/k: ")


# --- usage errors, before anything is sent ------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["read"], "Not enough arguments (expected at least 1, got 0)"),
    (["list", "a", "b"], "Too many arguments (expected 1, got 2)"),
    (["unwrap", "a", "b"], "Too many arguments (expected 0-1, got 2)"),
    (["write", "secret/data/x"], "Must supply data or use -force"),
    (["write", "secret/data/x", "novalue"], "invalid key/value pair 'novalue'"),
    (["read", "-wrap-ttl"], "flag needs an argument: -wrap-ttl"),
    (["delete", "-wrap-ttl=1m", "x"], "flag provided but not defined: -wrap-ttl"),
    (["login", "-method=userpass", "-format=yaml", "username=u"], "Invalid output format 'yaml'"),
])
def test_usage_errors_of_the_new_commands_exit_2(args, message):
    run = vaultd(None, *args)
    assert run.code == 2 and f"Error: {message}" in run.err and "-help" in run.err
