"""The webhook's certificates: issued, judged and renewed with an injected `now`, no I/O."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from mtping.certs import (
    CertPolicy,
    ServingBundle,
    ServingNames,
    expires_at,
    issue,
    renewal_reason,
    serving_names,
)
from mtping.webhook import load_chain

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NAMES = serving_names(service="mtping-webhook", namespace="knative-eventing", url_host="127.0.0.1")
POLICY = CertPolicy()


@pytest.fixture(scope="module")
def bundle() -> ServingBundle:
    return issue(NAMES, now=NOW)


def test_serving_names_are_the_service_dns_names_plus_the_url_host() -> None:
    assert NAMES.dns == (
        "mtping-webhook.knative-eventing.svc",
        "mtping-webhook.knative-eventing.svc.cluster.local",
    )
    assert NAMES.ips == ("127.0.0.1",)
    by_name = serving_names(service="s", namespace="n", url_host="Webhook.Example")
    assert (by_name.dns[-1], by_name.ips) == ("webhook.example", ())


def test_a_fresh_bundle_is_good_until_the_renewal_window(bundle: ServingBundle) -> None:
    assert renewal_reason(bundle, NAMES, now=NOW) is None
    last_good = NOW + POLICY.validity - POLICY.renew_before
    assert renewal_reason(bundle, NAMES, now=last_good) is None
    reason = renewal_reason(bundle, NAMES, now=last_good + timedelta(seconds=1))
    assert reason == f"the certificate expires at {(NOW + POLICY.validity).isoformat()}"
    assert expires_at(bundle) == NOW + POLICY.validity


def test_the_certificate_is_backdated_for_lagging_clocks(bundle: ServingBundle) -> None:
    cert = x509.load_pem_x509_certificate(bundle.cert_pem)
    assert cert.not_valid_before_utc == NOW - POLICY.backdate
    assert renewal_reason(bundle, NAMES, now=NOW - POLICY.backdate) is None
    early = renewal_reason(bundle, NAMES, now=NOW - POLICY.backdate - timedelta(seconds=1))
    assert early is not None
    assert early.startswith("the certificate is not valid before")


def test_the_certificate_is_a_server_leaf_covering_every_name(bundle: ServingBundle) -> None:
    cert = x509.load_pem_x509_certificate(bundle.cert_pem)
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == list(NAMES.dns)
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    (ca,) = x509.load_pem_x509_certificates(bundle.ca_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    cert.verify_directly_issued_by(ca)


def test_openssl_verifies_the_certificate_against_the_ca_for_each_name() -> None:
    """What the apiserver does, done by OpenSSL: chain to caBundle, then match the host.

    OpenSSL checks validity against the real clock, so this bundle is issued now.
    """
    bundle = issue(NAMES, now=datetime.now(UTC))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_chain(server, bundle)
    for host in (*NAMES.dns, *NAMES.ips):
        client = ssl.create_default_context(cadata=bundle.ca_pem.decode())
        assert _handshake(server, client, host) is None, host
    client = ssl.create_default_context(cadata=bundle.ca_pem.decode())
    assert "mismatch" in str(_handshake(server, client, "other.example"))


def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, host: str
) -> Exception | None:
    """An in-memory TLS handshake; the client's verification error, if any."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname=host)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as error:
                if side is client:
                    return error
        server_in.write(to_server.read())
        to_client.write(server_out.read())
    return None


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        pytest.param(
            serving_names(service="renamed", namespace="knative-eventing"),
            "the certificate does not cover renamed.knative-eventing.svc, "
            "renamed.knative-eventing.svc.cluster.local",
            id="service-renamed",
        ),
        pytest.param(
            serving_names(service="mtping-webhook", namespace="knative-eventing", url_host="::1"),
            "the certificate does not cover ::1",
            id="url-host-changed",
        ),
    ],
)
def test_a_bundle_not_covering_the_names_must_be_renewed(
    bundle: ServingBundle, names: ServingNames, reason: str
) -> None:
    assert renewal_reason(bundle, names, now=NOW) == reason


def test_broken_bundles_must_be_renewed(bundle: ServingBundle) -> None:
    other = issue(NAMES, now=NOW)
    cases = {
        "unreadable": ServingBundle(b"", b"", b""),
        "wrong key": ServingBundle(bundle.ca_pem, bundle.cert_pem, other.key_pem),
        "wrong CA": ServingBundle(other.ca_pem, bundle.cert_pem, bundle.key_pem),
    }
    reasons = {name: renewal_reason(case, NAMES, now=NOW) for name, case in cases.items()}
    assert reasons["unreadable"] is not None
    assert reasons["unreadable"].startswith("unreadable certificate, key or CA")
    assert reasons["wrong key"] == "the private key does not match the certificate"
    assert reasons["wrong CA"] == "the certificate is not signed by a CA of the bundle"


def test_a_renewed_bundle_keeps_the_previous_ca_while_it_is_valid(bundle: ServingBundle) -> None:
    later = NOW + POLICY.validity - timedelta(days=1)
    renewed = issue(NAMES, now=later, previous=bundle)

    new_ca, old_ca = x509.load_pem_x509_certificates(renewed.ca_pem)
    assert old_ca == x509.load_pem_x509_certificate(bundle.ca_pem)
    assert renewal_reason(renewed, NAMES, now=later) is None
    x509.load_pem_x509_certificate(renewed.cert_pem).verify_directly_issued_by(new_ca)
    # The old certificate still verifies against the new caBundle during the swap.
    old_cert_new_bundle = ServingBundle(renewed.ca_pem, bundle.cert_pem, bundle.key_pem)
    no_window = CertPolicy(renew_before=timedelta(0))
    assert renewal_reason(old_cert_new_bundle, NAMES, now=later, policy=no_window) is None


def test_expired_cas_are_dropped_at_the_next_renewal(bundle: ServingBundle) -> None:
    after_expiry = NOW + POLICY.validity + timedelta(seconds=1)
    renewed = issue(NAMES, now=after_expiry, previous=bundle)
    assert len(x509.load_pem_x509_certificates(renewed.ca_pem)) == 1
