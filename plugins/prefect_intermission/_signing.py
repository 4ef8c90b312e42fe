"""HMAC signatures for stored pickles, with a key kept as a Prefect Secret block.

The sampler must be pickled to keep its RNG; a pickle runs code when loaded, so it
is unpickled only if its signature matches a key that only the Prefect server holds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from prefect.blocks.system import Secret

SIGNING_KEY_BLOCK = "intermission-signing-key"


def signing_key() -> bytes:
    """The project's signing key, created as the Secret block `intermission-signing-key` on first use."""
    try:
        return Secret.load(SIGNING_KEY_BLOCK).get().encode()
    except ValueError:
        pass
    try:
        Secret(value=secrets.token_hex(32)).save(SIGNING_KEY_BLOCK)
    except ValueError:
        pass  # another execution created it first; use theirs
    return Secret.load(SIGNING_KEY_BLOCK).get().encode()


def sign(data: bytes, key: bytes) -> str:
    """The hex HMAC-SHA256 of `data`."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(data: bytes, signature: object, key: bytes) -> bool:
    """Whether `signature` is the hex HMAC of `data` under `key` (constant-time comparison).

    Anything but ASCII text (None, a number, a list, non-ASCII text) is simply no match.
    """
    if not isinstance(signature, str) or not signature.isascii():
        return False
    return hmac.compare_digest(sign(data, key), signature)
