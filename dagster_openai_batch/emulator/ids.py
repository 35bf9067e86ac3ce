"""Object ids shaped like the real service's.

`batch_`, `batch_req_`, `resp_` and `msg_` ids are hex whose first 8 digits are the creation time
(unix seconds); chat/completion ids are 29 letters or digits; file ids 22; `request_id`s are UUIDs.
Ids of result lines and bodies are derived from their inputs (the same batch writes the same ids).
"""

import hashlib
import secrets
import string
import uuid

_ALPHABET = string.ascii_letters + string.digits
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[i % len(_ALPHABET)]) for i in range(256))


def _digest(parts: tuple[str, ...], size: int) -> bytes:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=size).digest()


def timed_hex(prefix: str, created: float, length: int, *parts: str) -> str:
    """`prefix` + `length` hex digits, the first 8 the creation time; the rest derived from
    `parts`, or random without them."""
    rest = length - 8
    tail = _digest(parts, rest // 2 + 1).hex() if parts else secrets.token_hex(rest // 2 + 1)
    return f"{prefix}{int(created) & 0xFFFFFFFF:08x}{tail[:rest]}"


def alnum(prefix: str, length: int, *parts: str) -> str:
    """`prefix` + `length` letters and digits, derived from `parts`, or random without them."""
    if not parts:
        return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))
    # One digest byte per character, mapped through a table (a slight bias toward the first
    # letters is of no matter for ids): a loop of divmods cost ~30 µs an id.
    return prefix + _digest(parts, length).translate(_BYTE_TO_CHAR).decode()


def request_uuid(*parts: str) -> str:
    """A version-4 UUID derived from `parts` (a result line's `request_id`)."""
    return str(uuid.UUID(bytes=_digest(parts, 16), version=4))
