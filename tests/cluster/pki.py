"""Certificates and keys for one control plane: a CA, the API server's serving certificate,
an admin client certificate (``O=system:masters``, which RBAC lets do anything) and the
service-account signing key. All are made fresh for each control plane and live only in its
state folder, so nothing here is a secret worth keeping."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import oid

_VALIDITY = datetime.timedelta(days=2)


@dataclasses.dataclass(frozen=True)
class Pki:
    ca_cert: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    admin_cert: pathlib.Path
    admin_key: pathlib.Path
    service_account_key: pathlib.Path


def _name(common_name: str, organisation: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(oid.NameOID.COMMON_NAME, common_name)]
    if organisation:
        attributes.append(x509.NameAttribute(oid.NameOID.ORGANIZATION_NAME, organisation))
    return x509.Name(attributes)


def _write_key(path: pathlib.Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server_names: list[x509.GeneralName] | None = None,
    usage: oid.ObjectIdentifier | None = None,
) -> x509.Certificate:
    # Backdated a little: the API server rejects a client certificate "not yet valid" if the
    # clocks of the test and the server round differently.
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(server_names), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def create(folder: pathlib.Path, extra_ips: tuple[str, ...] = ()) -> Pki:
    """Fresh keys and certificates in ``folder``; the API server's certificate also names
    ``extra_ips`` (the pod bridge's host address, through which a real node's pods reach
    it)."""
    folder.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_cert=folder / "ca.crt",
        server_cert=folder / "apiserver.crt",
        server_key=folder / "apiserver.key",
        admin_cert=folder / "admin.crt",
        admin_key=folder / "admin.key",
        service_account_key=folder / "service-account.key",
    )
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("jobqueue-test-ca")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),  # the `kubernetes` Service
        *(x509.IPAddress(ipaddress.ip_address(address)) for address in extra_ips),
    ]
    server = _certificate(
        _name("kube-apiserver"),
        server_key,
        ca_name,
        ca_key,
        server_names=names,
        usage=oid.ExtendedKeyUsageOID.SERVER_AUTH,
    )
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.server_key, server_key)

    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _certificate(
        _name("jobqueue-test-admin", "system:masters"),
        admin_key,
        ca_name,
        ca_key,
        usage=oid.ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    pki.admin_cert.write_bytes(admin.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.admin_key, admin_key)

    # RSA: RS256 is the one algorithm every token consumer accepts.
    _write_key(pki.service_account_key, rsa.generate_private_key(65537, 2048))
    return pki
