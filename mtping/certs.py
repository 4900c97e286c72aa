"""The webhook's TLS material: a throw-away CA and the serving certificate it signs.

Like Knative's webhook certificates: a fresh ECDSA P-256 CA and serving certificate are made
together and the CA's private key is discarded at once, so a stolen Secret cannot mint
certificates for anything else. Certificates live `CertPolicy.validity` (7 days) and are
replaced once less than `renew_before` (2 days) is left, or when they no longer cover the
names the webhook is reached by. A new bundle's CA list keeps the previous CAs that are still
valid, so an apiserver (or replica) still using the old certificate keeps verifying during the
swap. Pure: `now` is always passed in; nothing here reads the clock, a file or the network
(key generation uses the OS random source, as it must).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ORGANIZATION = "mtping"


@dataclass(frozen=True, slots=True)
class CertPolicy:
    validity: timedelta = timedelta(days=7)
    renew_before: timedelta = timedelta(days=2)
    """More than Knative's one day: a replica down over a weekend still finds a valid cert."""
    backdate: timedelta = timedelta(hours=1)
    """notBefore this far in the past, so an apiserver whose clock lags accepts a new cert."""


@dataclass(frozen=True, slots=True)
class ServingNames:
    """What the certificate must cover: the Service's DNS names, and a URL's host if given."""

    dns: tuple[str, ...]
    ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServingBundle:
    """PEM bytes as stored in the Secret: CA list (the caBundle), certificate, private key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def serving_names(*, service: str, namespace: str, url_host: str | None = None) -> ServingNames:
    """`<svc>.<ns>.svc` and `<svc>.<ns>.svc.cluster.local`, plus `url_host` (a name or an IP)."""
    dns = [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
    ips: list[str] = []
    if url_host:
        try:
            ips.append(str(ipaddress.ip_address(url_host)))
        except ValueError:
            dns.append(url_host.lower())
    return ServingNames(dns=tuple(dns), ips=tuple(ips))


def issue(
    names: ServingNames,
    *,
    now: datetime,
    policy: CertPolicy = CertPolicy(),
    previous: ServingBundle | None = None,
) -> ServingBundle:
    """A new CA and serving certificate; the CA list also keeps `previous`'s unexpired CAs."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, now=now, policy=policy)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _serving_certificate(key, names, ca_cert, ca_key, now=now, policy=policy)
    kept = _still_valid_cas(previous, now) if previous is not None else []
    return ServingBundle(
        ca_pem=b"".join(_pem(ca) for ca in [ca_cert, *kept]),
        cert_pem=_pem(cert),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def renewal_reason(
    bundle: ServingBundle, names: ServingNames, *, now: datetime, policy: CertPolicy = CertPolicy()
) -> str | None:
    """Why `bundle` must be replaced now, or None while it is good to serve."""
    try:
        cert = x509.load_pem_x509_certificate(bundle.cert_pem)
        key = serialization.load_pem_private_key(bundle.key_pem, password=None)
        cas = x509.load_pem_x509_certificates(bundle.ca_pem)
    except (ValueError, TypeError) as error:
        return f"unreadable certificate, key or CA: {error}"
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        return "the private key does not match the certificate"
    if not any(_issued_by(cert, ca) for ca in cas):
        return "the certificate is not signed by a CA of the bundle"
    return _coverage_problem(cert, names) or _validity_problem(cert, now=now, policy=policy)


def expires_at(bundle: ServingBundle) -> datetime:
    """When the serving certificate expires (UTC)."""
    return x509.load_pem_x509_certificate(bundle.cert_pem).not_valid_after_utc


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, *, now: datetime, policy: CertPolicy
) -> x509.Certificate:
    name = _name(f"{ORGANIZATION} webhook CA {now:%Y-%m-%dT%H:%M:%SZ}")
    public = key.public_key()
    return (
        _builder(name, name, public, now=now, policy=policy)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signing=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _serving_certificate(
    key: ec.EllipticCurvePrivateKey,
    names: ServingNames,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    now: datetime,
    policy: CertPolicy,
) -> x509.Certificate:
    builder = _builder(
        _name(names.dns[0]), ca_cert.subject, key.public_key(), now=now, policy=policy
    )
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, ec.EllipticCurvePublicKey):  # always true: we made it
        raise TypeError("the CA key must be an EC key")
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signing=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_alt_names(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    *,
    now: datetime,
    policy: CertPolicy,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - policy.backdate)
        .not_valid_after(now + policy.validity)
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _key_usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signing,
        crl_sign=signing,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(names: ServingNames) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = [x509.DNSName(name) for name in names.dns]
    general += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in names.ips]
    return x509.SubjectAlternativeName(general)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _public_der(public: PublicKeyTypes) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _coverage_problem(cert: x509.Certificate, names: ServingNames) -> str | None:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate has no subject alternative names"
    covered_dns = set(alt.get_values_for_type(x509.DNSName))
    covered_ips = {str(ip) for ip in alt.get_values_for_type(x509.IPAddress)}
    missing = [n for n in names.dns if n not in covered_dns]
    missing += [ip for ip in names.ips if ip not in covered_ips]
    return f"the certificate does not cover {', '.join(missing)}" if missing else None


def _validity_problem(cert: x509.Certificate, *, now: datetime, policy: CertPolicy) -> str | None:
    if cert.not_valid_before_utc > now:
        return f"the certificate is not valid before {cert.not_valid_before_utc.isoformat()}"
    if cert.not_valid_after_utc - now < policy.renew_before:
        return f"the certificate expires at {cert.not_valid_after_utc.isoformat()}"
    return None


def _still_valid_cas(previous: ServingBundle, now: datetime) -> list[x509.Certificate]:
    try:
        cas = x509.load_pem_x509_certificates(previous.ca_pem)
    except ValueError:
        return []
    return [ca for ca in cas if ca.not_valid_after_utc > now]
