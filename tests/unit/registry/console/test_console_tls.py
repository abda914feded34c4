"""With --console-tls-cert and --console-tls-key the console serves HTTPS, its cookie is
Secure and it asks browsers to keep to HTTPS; unusable TLS files stop it with their names."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshwarden.registry.console import ConsoleBindError
from tests.unit.registry.console.conftest import serve_console


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "console.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "console.pem", directory / "console.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_over_tls_the_cookie_is_secure(tmp_path: Path) -> None:
    files = self_signed(tmp_path)
    async with serve_console(tmp_path, files) as served:
        trusting = ssl.create_default_context(cafile=str(files[0]))
        trusting.check_hostname = False  # the test certificate names console.test, not 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post(
                f"{served.url}/login",
                data={"token": served.operator_token, "user": "ann"},
                ssl=trusting,
                allow_redirects=False,
            ) as reply:
                assert reply.status == 303
                assert "Secure" in reply.headers["Set-Cookie"] and "HttpOnly" in reply.headers["Set-Cookie"]
                assert reply.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_unusable_tls_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConsoleBindError, match="bad.pem"):
        async with serve_console(tmp_path, (tmp_path / "bad.pem", tmp_path / "bad.pem")):
            pass
