"""Encryption of secrets at rest (Fernet: AES-128-CBC with HMAC-SHA256) and token hashing."""

from __future__ import annotations

import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    """Encrypts and decrypts credential secrets with the server's key."""

    def __init__(self, key: bytes):
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise RuntimeError("cannot decrypt a stored secret: wrong HEADWATER_SECRET_KEY?") from exc

    def __repr__(self) -> str:
        return "SecretBox(***)"


# What responses show instead of a secret.
SECRET_MASK = "***********"

TOKEN_PREFIX = "hw_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: no dictionary to defend against.
    return hashlib.sha256(token.encode()).hexdigest()
