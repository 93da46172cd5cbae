"""Validation of an apply batch, shared by every backend so that they refuse the same input."""

from collections.abc import Iterable, Sequence

from . import limits
from .errors import InvalidBatch, KeyTooLarge, ValueTooLarge

Op = tuple[str, str, bytes | None]


def validate_ops(ops: Iterable[Op]) -> list[Op]:
    """The batch as a list of (op, key, bytes|None), or InvalidBatch naming the first bad op."""
    checked = []
    for position, item in enumerate(ops):
        if position >= limits.batch_ops_max:
            raise InvalidBatch(f"a batch holds at most {limits.batch_ops_max} ops")
        try:
            op, key, value = item
        except (TypeError, ValueError):
            raise InvalidBatch(f"op {position} is not (op, key, value)") from None
        checked.append(_validate_op(position, op, key, value))
    return checked


def _validate_op(position: int, op: object, key: object, value: object) -> Op:
    if not isinstance(key, str) or not key:
        raise InvalidBatch(f"op {position}: the key must be a non-empty string")
    try:
        key_bytes = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidBatch(f"op {position}: the key is not valid UTF-8") from None
    if key_bytes > limits.key_bytes_max:
        raise KeyTooLarge(f"op {position}: key of {key_bytes} bytes, over {limits.key_bytes_max}")
    if op == "delete":
        if value is not None:
            raise InvalidBatch(f"op {position}: a delete carries no value")
        return ("delete", key, None)
    if op != "put":
        raise InvalidBatch(f"op {position}: unknown op {op!r}; expected 'put' or 'delete'")
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidBatch(f"op {position}: a put needs a bytes value")
    value = bytes(value)
    if len(value) > limits.value_bytes_max:
        raise ValueTooLarge(f"op {position}: value of {len(value)} bytes, over {limits.value_bytes_max}")
    return ("put", key, value)


def group_size(transactions: Sequence[Sequence[Op]], ops_max: int, bytes_max: int) -> int:
    """How many of the oldest `transactions` fit in one merged batch (group commit): at most `ops_max` ops
    and `bytes_max` bytes of keys and values, and always at least one."""
    count = size = taken = 0
    for transaction in transactions:
        transaction_size = sum(len(key) + len(value or b"") for _, key, value in transaction)
        if taken and (count + len(transaction) > ops_max or size + transaction_size > bytes_max):
            break
        count, size, taken = count + len(transaction), size + transaction_size, taken + 1
    return taken
