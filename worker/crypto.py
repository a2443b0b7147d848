"""Encryption of secrets that leave the API process: in the broker and in the database.

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) with a key list for rotation:
the first key encrypts, every key decrypts, and :meth:`Cipher.rotate` re-encrypts a
token under the first key.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["Cipher", "InvalidToken"]


class Cipher:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def encrypt_json(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode()).decode()

    def decrypt_json(self, token: str) -> dict[str, Any]:
        """Raises ``InvalidToken`` when no configured key opens the token."""
        value = json.loads(self._fernet.decrypt(token.encode()))
        if not isinstance(value, dict):
            raise InvalidToken("not a JSON object")
        return value

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()
