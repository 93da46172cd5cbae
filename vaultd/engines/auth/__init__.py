"""Credential backends (Vault's builtin/credential): AppRole and Userpass.

A login handler never makes a token. It answers `Response(auth=spec)`, where `spec` describes the token the
core should issue (see `token_fields.auth_spec`); the core creates the orphan token, its lease, and the `auth`
block the client sees. Login paths (`login`, `login/...`) reach the engine without a token.

    token_fields.py  Vault's common token_* role fields (tokenutil): declared, parsed, read back, and turned
                     into the auth spec; CIDR parsing and the source-address check shared by both methods
    approle.py       roles, role-ids, secret-ids (stored only as HMACs) and login with role_id + secret_id
    userpass.py      users (passwords stored only as scrypt hashes) and login/<username>
"""
