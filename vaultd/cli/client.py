"""A small Vault HTTP client on `urllib.request`: JSON bodies (raw bytes for Raft snapshots), `X-Vault-Token`,
the LIST verb, one redirect, and `X-Vault-Wrap-TTL` on every request when a wrap TTL is set (the Vault CLI's
`-wrap-ttl`).

Reads follow the Vault Go client: a 404 is "nothing there" (`None`) unless its body carries data or warnings,
which is how KV v2 answers for a deleted version. Any other status >= 400 raises ApiError with the server's
`errors`; a request that gets no HTTP answer raises Unreachable.
"""

import http.client
import ipaddress
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

from .errors import ApiError, Unreachable

request_timeout_seconds = 60.0
# Vault's Go client follows exactly one redirect (a standby's 307), re-sending the body (vault_api.md §10.4).
redirects_max = 1
# An error body is quoted at most this long when it is not Vault's JSON.
error_text_bytes_max = 200


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a 307 only for GET and drop the body; the client follows it itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Client:
    def __init__(self, address: str, token: str = "", ca_cert: str | None = None, skip_verify: bool = False,
                 wrap_ttl: str = ""):
        self.address = address.rstrip("/")
        self.token = token
        self.wrap_ttl = wrap_ttl  # "" sends no X-Vault-Wrap-TTL; the server parses and checks the duration
        parsed = urllib.parse.urlsplit(self.address)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise Unreachable(f"invalid address {address!r}: want http://host:port or https://host:port")
        handlers: list = [_NoRedirect()]
        if _is_loopback(parsed.hostname):
            handlers.append(urllib.request.ProxyHandler({}))  # as Go's ProxyFromEnvironment, never for loopback
        if parsed.scheme == "https":
            context = ssl.create_default_context(cafile=ca_cert)
            if skip_verify:
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    # --- the verbs ---------------------------------------------------------------------------------------

    def get(self, path: str, query: dict | None = None) -> dict | None:
        """GET where a 404 is an error like any other (status endpoints, sys/ tables)."""
        return self.request("GET", path, query=query)[1]

    def read(self, path: str, query: dict | None = None) -> dict | None:
        """GET where a 404 without data is `None`: nothing stored at the path."""
        status, body = self.request("GET", path, query=query, accept_not_found=True)
        return _found(status, body)

    def list(self, path: str) -> dict | None:
        status, body = self.request("LIST", path.rstrip("/") + "/", accept_not_found=True)
        return _found(status, body)

    def write(self, path: str, body: dict | None = None, method: str = "PUT") -> dict | None:
        return self.request(method, path, body=body if body is not None else {})[1]

    def delete(self, path: str, query: dict | None = None) -> dict | None:
        return self.request("DELETE", path, query=query)[1]

    # --- the transport -----------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: dict | None = None, query: dict | None = None,
                accept_not_found: bool = False) -> tuple[int, dict | None]:
        """Send one request to /v1/<path>; return (status, parsed body or None for an empty one)."""
        data = None if body is None else json.dumps(body).encode()
        status, url, raw = self._exchange(method, path, query, data, "application/json")
        if status == 404 and accept_not_found:
            return status, _parse(raw, method, url, status, lenient=True)
        if status >= 300:
            raise _api_error(method, url, status, raw)
        return status, _parse(raw, method, url, status)

    def request_bytes(self, method: str, path: str, data: bytes | None = None) -> bytes:
        """Send `data` as is (application/octet-stream) and return the answer's body as is: Raft snapshots."""
        status, url, raw = self._exchange(method, path, None, data, "application/octet-stream")
        if status >= 300:
            raise _api_error(method, url, status, raw)
        return raw

    def _exchange(self, method: str, path: str, query: dict | None, data: bytes | None,
                  content_type: str) -> tuple[int, str, bytes]:
        """Send to /v1/<path>, following at most `redirects_max` redirects with the same body; return
        (status, the last URL asked, the raw body)."""
        url = f"{self.address}/v1/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        status, headers, raw = self._send(method, url, data, content_type)
        for _ in range(redirects_max):
            location = headers.get("Location") if status in (301, 302, 307, 308) else None
            if location is None:
                break
            url = self._redirect_target(url, location)
            status, headers, raw = self._send(method, url, data, content_type)
        return status, url, raw

    def _send(self, method: str, url: str, data: bytes | None, content_type: str) -> tuple[int, Message, bytes]:
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("X-Vault-Request", "true")
        if self.token:
            request.add_header("X-Vault-Token", self.token)
        if self.wrap_ttl:
            request.add_header("X-Vault-Wrap-TTL", self.wrap_ttl)
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with self._opener.open(request, timeout=request_timeout_seconds) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers or Message(), error.read()
        except urllib.error.URLError as error:
            raise Unreachable(f"cannot reach {self.address}: {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:
            raise Unreachable(f"cannot reach {self.address}: {error or type(error).__name__}") from None

    @staticmethod
    def _redirect_target(url: str, location: str) -> str:
        target = urllib.parse.urljoin(url, location)
        if url.startswith("https:") and not target.startswith("https:"):
            raise Unreachable(f"refusing a redirect from {url} to {target}: it would downgrade the protocol")
        return target


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _found(status: int, body: dict | None) -> dict | None:
    if status != 404:
        return body
    if body and (body.get("data") or body.get("warnings")):
        return body
    return None


def _parse(raw: bytes, method: str, url: str, status: int, lenient: bool = False) -> dict | None:
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        if lenient:
            return None
        raise ApiError(method, url, status, [], reason=f"the server's answer is not JSON: {_quote(raw)}") from None
    return body if isinstance(body, dict) else {"data": body}


def _api_error(method: str, url: str, status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        body = None
    if isinstance(body, dict):
        errors = [str(error) for error in body.get("errors") or []]
        reason = http.client.responses.get(status, "")
        return ApiError(method, url, status, errors, reason=reason)
    return ApiError(method, url, status, [], reason=_quote(raw))


def _quote(raw: bytes) -> str:
    text = raw[:error_text_bytes_max].decode(errors="replace").strip().splitlines()
    return text[0] if text else ""
