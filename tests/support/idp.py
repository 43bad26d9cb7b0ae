"""A real OpenID identity provider for the tests: oidc-provider (tests/clients/identity-provider.mjs) run
with Node on a free loopback port, keys generated at test time, stopped by its PID.

Tokens come from it by the client credentials grant, for a resource (RFC 8707). Tokens it would never
issue (expired, another issuer...) are signed here with its own private key, so that each such token
differs from a good one in the one claim under test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.orthanc import free_port

CLIENTS_DIR = Path(__file__).resolve().parent.parent / "clients"
SCRIPT = CLIENTS_DIR / "identity-provider.mjs"
SECRET = "client-secret-for-tests"
# Clients the provider knows, by the scopes each may ask for.
CLIENTS = {
    "reader": "dicom.read",
    "writer": "dicom.read dicom.write",
    "admin": "dicom.read dicom.write dicom.delete",
    "nothing": "",
}


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(
            f"k-{uuid.uuid4().hex[:12]}", rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )

    def private_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private))
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class IdentityProvider:
    """One oidc-provider process. ``keys[0]`` is the key it signs with; all of ``keys`` are published."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys = [SigningKey.generate()]
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []

    def start(self) -> IdentityProvider:
        settings = {
            "port": self.port,
            "keys": [key.private_jwk() for key in self.keys],
            "clients": [
                {"client_id": name, "client_secret": SECRET, **({"scope": scope} if scope else {})}
                for name, scope in CLIENTS.items()
            ],
        }
        path = self._workdir / "idp-settings.json"
        path.write_text(json.dumps(settings))
        path.chmod(0o600)
        self._process = subprocess.Popen(
            ["node", str(SCRIPT), str(path)],
            cwd=CLIENTS_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        ready = threading.Event()

        def read() -> None:
            assert self._process is not None and self._process.stdout is not None
            for raw in self._process.stdout:
                self.log.append(raw.decode(errors="replace"))
                if self.log[-1].startswith("listening "):
                    ready.set()
            ready.set()  # the process ended: stop waiting, the assert below says why

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(30) and self._process.poll() is None, "".join(self.log)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=20)

    def token(self, resource: str, client: str = "admin", scope: str | None = None) -> str:
        """An access token from the provider's token endpoint (client credentials, for ``resource``)."""
        form = {
            "grant_type": "client_credentials",
            "client_id": client,
            "client_secret": SECRET,
            "resource": resource,
        }
        if scope or CLIENTS[client]:
            form["scope"] = scope or CLIENTS[client]
        response = httpx.post(f"{self.issuer}/token", data=form, timeout=10)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def sign(self, claims: dict[str, Any], *, key: SigningKey | None = None, kid: str | None = None) -> str:
        """A token signed with the provider's current private key (or ``key``), carrying ``claims``."""
        signer = key or self.keys[0]
        return jwt.encode(claims, signer.private, algorithm="RS256", headers={"kid": kid or signer.kid})

    def claims(self, resource: str, **changes: Any) -> dict[str, Any]:
        """The claims of a good token for ``resource``, with ``changes`` (a None value removes a claim)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "admin",
            "aud": resource,
            "iat": now,
            "exp": now + 300,
            "client_id": "admin",
            "scope": CLIENTS["admin"],
            "jti": uuid.uuid4().hex,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def rotate(self) -> SigningKey:
        """A new signing key, published first; the old ones stay published (as an issuer rotates)."""
        self.keys.insert(0, SigningKey.generate())
        response = httpx.post(
            f"{self.issuer}/test/rotate", json={"keys": [key.private_jwk() for key in self.keys]}, timeout=10
        )
        assert response.status_code == 204, response.text
        return self.keys[0]

    def jwks_fetches(self) -> int:
        """How many times anyone fetched the provider's JWKS."""
        count: int = httpx.get(f"{self.issuer}/test/stats", timeout=10).json()["jwks"]
        return count


@contextmanager
def running_identity_provider(workdir: Path) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(workdir).start()
    try:
        yield provider
    finally:
        provider.stop()
