"""HTTPS for the server: the operator's certificate, or one signed by the server's own CA.

With ``tls.cert_file``/``tls.key_file`` set, those PEM files are served as they are. Without them
the server keeps a CA of its own in ``<home>/tls/`` (``ca.pem``, ``ca.key``, mode 0600 for keys),
made once, and signs a server certificate for ``tls.host_names`` with it (remade when the names
change or it nears its end). ``ca-bundle.pem`` is certifi's bundle plus that CA: the file
``REQUESTS_CA_BUNDLE`` names for clients that must trust both Azure's public hosts and this server
(``batchpoint azure-env`` prints it).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from batchpoint._internal.clock import utcnow
from batchpoint.exceptions import ValidationError
from batchpoint.settings import Settings

CA_LIFE = timedelta(days=3650)
CERT_LIFE = timedelta(days=397)
RENEW_BEFORE = timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path | None  # the generated CA (None: the operator's certificate)
    bundle_file: Path | None  # certifi's bundle + the CA


def tls_dir(home: Path) -> Path:
    return home / "tls"


def prepare(settings: Settings) -> TlsFiles:
    """The certificate and key to serve, making the local CA and certificate when none are given."""
    tls = settings.tls
    if tls.cert_file or tls.key_file:
        if not (tls.cert_file and tls.key_file):
            raise ValidationError("tls.cert_file and tls.key_file go together (BATCHPOINT_TLS__CERT_FILE and "
                                  "BATCHPOINT_TLS__KEY_FILE): give both PEM files, or neither for a local CA")
        for path in (tls.cert_file, tls.key_file):
            if not Path(path).is_file():
                raise ValidationError(f"TLS file '{path}' does not exist")
        return TlsFiles(Path(tls.cert_file), Path(tls.key_file), None, None)
    folder = tls_dir(settings.home)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _load_or_make_ca(folder)
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    names = sorted(set(tls.host_names) | {f"*.blob.{settings.azure.storage_suffix}"})  # the blob endpoint's hosts
    if not _still_good(cert_file, key_file, names, ca_cert):
        _make_server_cert(cert_file, key_file, names, ca_key, ca_cert)
    bundle = folder / "ca-bundle.pem"
    _write_bundle(bundle, folder / "ca.pem")
    return TlsFiles(cert_file, key_file, folder / "ca.pem", bundle)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(files.cert_file), str(files.key_file))
    return context


# -- the local CA --------------------------------------------------------------------------------

def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_or_make_ca(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = folder / "ca.key", folder / "ca.pem"
    if key_path.is_file() and cert_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())  # type: ignore[return-value]
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Batchpoint local CA ({folder.parent.name})")])
    now = utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + CA_LIFE)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _san(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _still_good(cert_file: Path, key_file: Path, names: list[str], ca: x509.Certificate) -> bool:
    if not (cert_file.is_file() and key_file.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    return (cert.issuer == ca.subject and set(san) == set(_san(names))
            and cert.not_valid_after_utc - RENEW_BEFORE > utcnow())


def _make_server_cert(cert_file: Path, key_file: Path, names: list[str], ca_key: ec.EllipticCurvePrivateKey,
                      ca_cert: x509.Certificate) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + CERT_LIFE)
            .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_private(key_file, _key_pem(key))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_bundle(bundle: Path, ca_file: Path) -> None:
    """certifi's bundle (Azure's public hosts) followed by the local CA."""
    try:
        import certifi

        public = Path(certifi.where()).read_text()
    except ImportError:  # certifi comes with requests/httpx; without it only the local CA is trusted
        public = ""
    text = public.rstrip("\n") + "\n" + ca_file.read_text()
    if not bundle.is_file() or bundle.read_text() != text:
        tmp = bundle.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, bundle)
