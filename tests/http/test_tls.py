"""The optional TLS listener: a node configured with [listener] tls_cert_file/tls_key_file serves HTTPS
only, with that certificate, and hvac talks to it when told to trust the certificate."""

import datetime
import ipaddress

import hvac
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .conftest import _start, _stop, free_port


def self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vaultd-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory / "cert.pem"


def test_a_tls_listener_serves_https_with_its_certificate(tmp_path):
    certificate = self_signed(tmp_path)
    port = free_port()
    (tmp_path / "cluster.toml").write_text(f"""
[cluster]
raft_key_file = "raft.key"
[seal]
type = "shamir"
[listener]
tls_cert_file = "cert.pem"
tls_key_file = "key.pem"
[[node]]
id = "n1"
api_addr = "127.0.0.1:{port}"
raft_addr = "127.0.0.1:{free_port()}"
data_dir = "data"
""")
    url = f"https://127.0.0.1:{port}"
    process = _start(["server", "--config", "cluster.toml", "--node", "n1"], tmp_path / "log", url, tmp_path)
    try:
        vault = hvac.Client(url=url, verify=str(certificate))
        assert vault.sys.is_initialized() is False
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url + "/v1/sys/health")  # not trusted without the certificate
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v1/sys/health", timeout=2)
    finally:
        _stop(process)
