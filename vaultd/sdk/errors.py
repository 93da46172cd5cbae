"""The domain errors of vaultd. No HTTP here: `vaultd/http/errors.py` maps each class to a status, once.

    VaultError
    ├── InvalidRequest            bad input: malformed body, wrong types, missing fields (400)
    │   └── CheckAndSetMismatch   a KV `cas` that does not match the current version (400)
    ├── PermissionDenied          no token, a bad token, or the ACL says no (403)
    ├── UnsupportedPath           no mount or no path matches (404)
    ├── NotFound                  the path exists but holds nothing, with an optional body (404)
    ├── UnsupportedOperation      the path does not take this operation (405)
    ├── PreconditionFailed        the node cannot yet serve the index asked for (412)
    ├── RequestTooLarge           the body is over the limit (413)
    ├── TooManyRequests           a quota or a bounded queue is full (429)
    ├── NotInitialized            the vault has not been initialised (501)
    ├── Sealed                    the vault is sealed (503)
    └── InternalError             a bug or an unavailable dependency, e.g. no audit device can write (500)

Each error carries the messages Vault would put in `{"errors": [...]}`.
"""


class VaultError(Exception):
    """Base class: `messages` are what the client sees in `errors`."""

    def __init__(self, *messages: str, data: dict | None = None):
        super().__init__(*messages)
        self.messages = list(messages)
        self.data = data  # a body some 4xx responses carry besides `errors` (e.g. KV v2's deleted version)


class InvalidRequest(VaultError):
    pass


class CheckAndSetMismatch(InvalidRequest):
    pass


class PermissionDenied(VaultError):
    def __init__(self, *messages: str, data: dict | None = None):
        super().__init__(*(messages or ("permission denied",)), data=data)


class UnsupportedPath(VaultError):
    pass


class NotFound(VaultError):
    pass


class UnsupportedOperation(VaultError):
    pass


class PreconditionFailed(VaultError):
    pass


class RequestTooLarge(VaultError):
    pass


class TooManyRequests(VaultError):
    pass


class NotInitialized(VaultError):
    def __init__(self, *messages: str, data: dict | None = None):
        super().__init__(*(messages or ("Vault is not initialized",)), data=data)


class Sealed(VaultError):
    def __init__(self, *messages: str, data: dict | None = None):
        super().__init__(*(messages or ("Vault is sealed",)), data=data)


class InternalError(VaultError):
    pass
