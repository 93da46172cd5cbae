"""One worker's HTTP connection to one vaultd node, and what each outcome means for the history.

A worker keeps one keep-alive connection (http.client), leaving from the harness address 127.0.0.1, which no
partition rule names: partitions are between nodes, the harness always reaches every node (jepsen.md §4).

Every request ends in exactly one of three ways, and the difference decides :fail versus :info (jepsen.md §3.3,
pitfall 3):

- `Answer`: the node answered with a status;
- `NotSent`: the connection could not be opened (refused, connect timeout): the request never left, so it
  definitely did not happen;
- `Indeterminate`: it was sent and no complete answer came back (timeout, reset, the node closed the
  connection): it may have happened, or may still happen.

`classify_write` and `classify_read` turn those into the history's ok / fail / info. A write is :fail only when
the server guarantees nothing was proposed: a 4xx (a check-and-set mismatch is a 400, an index not yet applied
a 412, a full proposal queue a 429) or nothing sent. Every 5xx and every lost answer of a write is :info. A read
changes nothing, so any read that did not answer 200 is :fail.
"""

import dataclasses
import http.client
import json
import select
import socket

harness_host = "127.0.0.1"  # the source of every harness request; never in a partition rule
connect_timeout_seconds = 1.0
request_timeout_seconds = 2.0  # above 2x the election timeout (0.6-1.2 s): a failover usually fits in one request
assert connect_timeout_seconds <= request_timeout_seconds
cas_mismatch_text = "check-and-set parameter did not match"


@dataclasses.dataclass(frozen=True)
class Answer:
    """A complete HTTP answer. `headers` has lower-case names; `body` is the parsed JSON, or None."""

    status: int
    headers: dict[str, str]
    body: object

    def errors(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("errors"), list):
            return "; ".join(str(error) for error in self.body["errors"])
        return ""

    @property
    def index_token(self) -> str | None:
        return self.headers.get("x-vault-index")


class NotSent(ConnectionError):
    """The request never left this process: the connection could not be opened. Definitely did not happen."""


class Indeterminate(ConnectionError):
    """The request was sent and no complete answer came back. `kind` is "timeout" or "disconnected"."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one operation came to: `type` is "ok", "fail" or "info"; `error` names why it was not ok."""

    type: str
    error: str | None = None
    answer: Answer | None = None

    @property
    def http_status(self) -> int | None:
        return None if self.answer is None else self.answer.status


class Client:
    """A keep-alive HTTP/1.1 connection to one node. Not thread-safe: one per worker."""

    def __init__(self, host: str, port: int, token: str | None = None, *,
                 timeout_seconds: float = request_timeout_seconds,
                 connect_timeout_seconds: float = connect_timeout_seconds):
        self.host, self.port, self.token = host, port, token
        self.timeout_seconds = timeout_seconds
        self.connect_timeout_seconds = connect_timeout_seconds
        self._connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(self, method: str, path: str, body=None, headers: dict | None = None) -> Answer:
        """Send one request on the kept connection. Raises NotSent or Indeterminate; an HTTP error status is an
        Answer, not an exception. `path` starts with /v1/."""
        connection = self._connect()
        sent = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            sent["X-Vault-Token"] = self.token
        sent.update(headers or {})
        data = None if body is None else json.dumps(body).encode()
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            payload = response.read()
        except TimeoutError as error:
            self.close()
            raise Indeterminate("timeout", f"{method} {path}: no answer within {self.timeout_seconds:g}s") \
                from error
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise Indeterminate("disconnected", f"{method} {path}: {type(error).__name__}: {error}") from error
        if response.will_close:
            self.close()
        try:
            document = json.loads(payload) if payload else None
        except ValueError:
            document = None
        return Answer(response.status, {name.lower(): value for name, value in response.getheaders()}, document)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is not None and _closed_by_peer(self._connection.sock):
            self.close()  # a node that restarted or timed out the idle connection: reconnect before sending
        if self._connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout_seconds,
                                                    source_address=(harness_host, 0))
            try:
                connection.connect()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                raise NotSent(f"cannot connect to {self.host}:{self.port}: {type(error).__name__}: {error}") \
                    from error
            connection.sock.settimeout(self.timeout_seconds)
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connection = connection
        return self._connection


def _closed_by_peer(sock: socket.socket | None) -> bool:
    """An idle keep-alive socket that is readable has an EOF (or junk) waiting: the peer closed it."""
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def perform(client: Client, method: str, path: str, body=None, headers: dict | None = None) -> Answer | ConnectionError:
    """`client.request`, with NotSent and Indeterminate returned rather than raised."""
    try:
        return client.request(method, path, body, headers)
    except (NotSent, Indeterminate) as error:
        return error


def classify_write(result: Answer | ConnectionError) -> Outcome:
    """A write's outcome: ok on 2xx; fail when nothing was proposed (4xx, or nothing sent); info otherwise."""
    if isinstance(result, NotSent):
        return Outcome("fail", "not-sent")
    if isinstance(result, Indeterminate):
        return Outcome("info", result.kind)
    if isinstance(result, ConnectionError):
        return Outcome("info", "disconnected")
    if 200 <= result.status < 300:
        return Outcome("ok", None, result)
    if result.status == 400 and cas_mismatch_text in result.errors():
        return Outcome("fail", "cas-mismatch", result)
    if 300 <= result.status < 500:
        return Outcome("fail", f"http-{result.status}", result)
    return Outcome("info", f"http-{result.status}", result)


def classify_read(result: Answer | ConnectionError, *, absent_ok: bool = False) -> Outcome:
    """A read's outcome: ok on 200 (and on 404 when `absent_ok`: a key never written); fail on anything else,
    since a read that did not answer changed nothing."""
    if isinstance(result, NotSent):
        return Outcome("fail", "not-sent")
    if isinstance(result, Indeterminate):
        return Outcome("fail", result.kind)
    if isinstance(result, ConnectionError):
        return Outcome("fail", "disconnected")
    if result.status == 200 or (absent_ok and result.status == 404 and not result.errors()):
        return Outcome("ok", None, result)
    return Outcome("fail", f"http-{result.status}", result)
