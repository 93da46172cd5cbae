"""Shamir's secret sharing over GF(2^8), in Vault's share format.

Vault (`sdk/helper/shamir`) splits each secret byte with its own random polynomial of degree threshold-1
over GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1, and appends the share's x-coordinate as the last byte:
a 32-byte key gives 33-byte shares. x-coordinates are distinct, drawn from 1..255 (0 would leak the secret).
Shares made here combine with Vault's code (and with pyshamir, its Python port) and the other way round;
tests/core/test_shamir.py checks both directions.

Python cannot promise constant time. Unseal is rare, local and rate-limited by the operator's hands; the
accepted risk is written down here rather than hidden.
"""

import secrets

parts_max = 255
threshold_min = 2


class ShamirError(ValueError):
    """Bad parameters or shares that cannot be combined."""


def _multiply(a: int, b: int) -> int:
    product = 0
    for _ in range(8):
        if b & 1:
            product ^= a
        carry = a & 0x80
        a = (a << 1) & 0xFF
        if carry:
            a ^= 0x1B
        b >>= 1
    return product


_exp = [0] * 510
_log = [0] * 256
_value = 1
for _power in range(255):
    _exp[_power] = _exp[_power + 255] = _value
    _log[_value] = _power
    _value = _multiply(_value, 0x03)  # 0x03 generates the multiplicative group of this field


def multiply(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _exp[_log[a] + _log[b]]


def divide(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(2^8)")
    if a == 0:
        return 0
    return _exp[(_log[a] - _log[b]) % 255]


def split(secret: bytes, parts: int, threshold: int, randbelow=secrets.randbelow) -> list[bytes]:
    """`parts` shares of `secret`, any `threshold` of which recover it."""
    if not secret:
        raise ShamirError("cannot split an empty secret")
    if not threshold_min <= threshold <= parts <= parts_max:
        raise ShamirError(f"need {threshold_min} <= threshold ({threshold}) <= parts ({parts}) <= {parts_max}")
    xs = _distinct_coordinates(parts, randbelow)
    shares = [bytearray(len(secret) + 1) for _ in range(parts)]
    for share, x in zip(shares, xs, strict=True):
        share[-1] = x
    for position, byte in enumerate(secret):
        coefficients = [byte] + [randbelow(256) for _ in range(threshold - 1)]
        for share, x in zip(shares, xs, strict=True):
            share[position] = _evaluate(coefficients, x)
    return [bytes(share) for share in shares]


def _distinct_coordinates(parts: int, randbelow) -> list[int]:
    """The first `parts` of a Fisher-Yates shuffle of 1..255, as Vault draws them."""
    pool = list(range(1, 256))
    for i in range(len(pool) - 1, 0, -1):
        j = randbelow(i + 1)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:parts]


def _evaluate(coefficients: list[int], x: int) -> int:
    """Horner's rule: the polynomial with these coefficients (constant first) at x."""
    result = 0
    for coefficient in reversed(coefficients):
        result = multiply(result, x) ^ coefficient
    return result


def combine(shares: list[bytes]) -> bytes:
    """The secret from `threshold` or more shares (fewer give a wrong secret, as in Vault: nothing tells)."""
    if len(shares) < threshold_min:
        raise ShamirError(f"at least {threshold_min} shares are needed")
    length = len(shares[0])
    if length < 2 or any(len(share) != length for share in shares):
        raise ShamirError("shares must be of equal length, at least 2 bytes")
    xs = [share[-1] for share in shares]
    if len(set(xs)) != len(xs):
        raise ShamirError("duplicate share")
    secret = bytearray(length - 1)
    for position in range(length - 1):
        secret[position] = _interpolate_at_zero(xs, [share[position] for share in shares])
    return bytes(secret)


def _interpolate_at_zero(xs: list[int], ys: list[int]) -> int:
    result = 0
    for i, (x_i, y_i) in enumerate(zip(xs, ys, strict=True)):
        basis = 1
        for j, x_j in enumerate(xs):
            if i != j:
                basis = multiply(basis, divide(x_j, x_j ^ x_i))
        result ^= multiply(y_i, basis)
    return result
