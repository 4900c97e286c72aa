"""Self-made PKI for a throw-away kube-apiserver: CA, serving cert, admin client cert, SA keys.

Its job: write PEM files the apiserver flags and the kubeconfigs point at. Keys are small and
short-lived on purpose (test speed); it must never be used for anything but a loopback cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=7)
_CLOCK_SKEW = datetime.timedelta(hours=1)

_PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class PkiFiles:
    """Where each PEM file of the control plane's PKI lives."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_public_key: Path
    service_account_private_key: Path


@dataclass(frozen=True, slots=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def write_pki(directory: Path) -> PkiFiles:
    """Generate every key and certificate the control plane needs into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    files = _pki_paths(directory)
    issuer = _make_ca()
    _write_cert(files.ca_cert, issuer.cert)
    _write_leaf(issuer, cert_path=files.serving_cert, key_path=files.serving_key, role="serving")
    _write_leaf(issuer, cert_path=files.admin_cert, key_path=files.admin_key, role="admin")
    _write_service_account_keys(files)
    return files


def _pki_paths(directory: Path) -> PkiFiles:
    return PkiFiles(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_public_key=directory / "sa.pub",
        service_account_private_key=directory / "sa.key",
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(subject: x509.Name, issuer: x509.Name, key: _PrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
    )


def _make_ca() -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("mtping-harness-ca")
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _Issuer(cert=cert, key=key)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write_leaf(issuer: _Issuer, *, cert_path: Path, key_path: Path, role: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = _builder(_leaf_subject(role), issuer.cert.subject, key)
    builder = builder.add_extension(_key_usage(ca=False), critical=True)
    builder = _add_role_extensions(builder, role)
    _write_cert(cert_path, builder.sign(issuer.key, hashes.SHA256()))
    _write_key(key_path, key)


def _leaf_subject(role: str) -> x509.Name:
    # The apiserver maps CN to the user name and O to groups: system:masters bypasses RBAC.
    return _name("admin", "system:masters") if role == "admin" else _name("kube-apiserver")


def _add_role_extensions(builder: x509.CertificateBuilder, role: str) -> x509.CertificateBuilder:
    if role == "admin":
        usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
        return builder.add_extension(usage, critical=False)
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    builder = builder.add_extension(usage, critical=False)
    return builder.add_extension(x509.SubjectAlternativeName(names), critical=False)


def _write_service_account_keys(files: PkiFiles) -> None:
    # Service-account tokens are RS256-signed by default: an RSA pair keeps every verifier happy.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(files.service_account_private_key, key)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    files.service_account_public_key.write_bytes(public_pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: _PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
