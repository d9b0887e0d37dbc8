"""The cluster's own PKI (the ``cryptography`` package): one CA, a serving certificate for the API
server and the kubelet, client certificates for every component, and the service-account key pair.

Why our own: a throwaway single-node cluster needs no external CA, and keys made per cluster never
leave its state directory (mode 0600). Identities follow Kubernetes' conventions (``system:masters``
for the admin and the API server's kubelet client, ``system:node:<name>`` in ``system:nodes`` for the
kubelet, ``system:kube-*`` for the control plane) so RBAC's default bindings apply.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.platforms.kubernetes.cluster import versions as v

_VALID = dt.timedelta(days=30)


@dataclass(frozen=True)
class Identity:
    name: str  # file stem
    cn: str
    org: str | None = None
    server: bool = False
    client: bool = True
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


def identities(node: str = v.NODE_NAME) -> list[Identity]:
    """Every certificate the cluster needs (pure)."""
    api_dns = ("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
               "localhost")
    return [
        Identity("apiserver", "kube-apiserver", server=True, client=False, dns=api_dns,
                 ips=(v.NODE_IP, v.KUBERNETES_SERVICE_IP, "127.0.0.1")),
        Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
        Identity("admin", "goverse-harness-admin", "system:masters"),
        Identity("controller-manager", "system:kube-controller-manager"),
        Identity("scheduler", "system:kube-scheduler"),
        Identity("kube-proxy", "system:kube-proxy", "system:node-proxier"),
        Identity("kubelet", f"system:node:{node}", "system:nodes", server=True, dns=(node,), ips=(v.NODE_IP,)),
    ]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_pki(directory: Path, node: str = v.NODE_NAME) -> Path:
    """Write ``ca.crt/key``, ``<identity>.crt/key`` and ``sa.key/pub`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = _key()
    ca_name = _name("goverse-harness-cluster-ca")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + _VALID)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "ca.key", ca_key)
    for ident in identities(node):
        key = _key()
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if ident.server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if ident.client else [])
        b = (x509.CertificateBuilder().subject_name(_name(ident.cn, ident.org)).issuer_name(ca_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now).not_valid_after(now + _VALID)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in ident.dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ident.ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        (directory / f"{ident.name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(directory / f"{ident.name}.key", key)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "sa.key", sa)
    (directory / "sa.pub").write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return directory
