"""The CLI's errors. `main` reports each as one line on stderr and exits with its `exit_status`.

    CliError                 exit 1: the command failed
    ├── UsageError           exit 2: a bad flag, a missing or extra argument; nothing was sent
    ├── NotFound             exit 2: the server holds nothing at the path (Vault's "No value found at ...")
    └── RequestError         exit 1: no usable answer from the server
        ├── Unreachable      no HTTP answer at all: refused, timed out, bad TLS
        └── ApiError         an HTTP status >= 400; carries the status and the server's `errors`

A command wraps the calls of one step in `Context.doing("reading x")`, which turns a RequestError into a
CliError reading `Error reading x: <why>`.
"""


class CliError(Exception):
    exit_status = 1


class UsageError(CliError):
    exit_status = 2


class NotFound(CliError):
    exit_status = 2


class RequestError(CliError):
    pass


class Unreachable(RequestError):
    pass


class ApiError(RequestError):
    """`errors` are the server's messages; the one-line text folds Vault's multi-line multierror form."""

    def __init__(self, method: str, url: str, status: int, errors: list[str], reason: str = ""):
        self.method, self.url, self.status, self.errors = method, url, status, errors
        text = "; ".join(line for error in errors for line in _lines(error)) or reason or "no error message"
        super().__init__(f"{text} (HTTP {status} on {method} {url})")


def _lines(error: str) -> list[str]:
    """`1 error occurred:\\n\\t* permission denied\\n\\n` becomes `permission denied`."""
    lines = [line.strip().removeprefix("* ") for line in str(error).splitlines()]
    return [line for line in lines if line and not line.endswith(("error occurred:", "errors occurred:"))]
