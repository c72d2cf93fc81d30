"""A grading cluster only the TA can drive: Dask's TLS with certificates the TA makes once.

A Dask scheduler started plainly (`dask scheduler --port 8786`) listens on every interface
without encryption or authentication, and any client that reaches it runs code on every
worker (`Client.run`): as the worker's user, with the hidden checks on its disk. Dask's own
answer is mutual TLS (`distributed.Security`): every process presents a certificate signed
by the course's certificate authority, and refuses a peer that does not.

`make_certificates(folder)` writes that authority and one certificate per role:

    ca.pem                    the authority's certificate (every machine needs it)
    ca-key.pem                its private key: keep it on the TA's machine, never on a worker
    scheduler.pem, -key.pem   for `dask scheduler`
    worker.pem, -key.pem      for every `dask worker`
    client.pem, -key.pem      for `course-lab autograde --scheduler tls://... --tls DIR`

`security(folder, *roles)` is the `distributed.Security` of those roles. Keys are written for the
owner only (0600). Dask checks the chain against the authority, not host names, so the same
certificates serve any machine the TA gives them to.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path
from urllib.parse import urlparse

ROLES = ("scheduler", "worker", "client")
DAYS = 365


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _certificate(subject: str, key, issuer: str, issuer_key, *, authority: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=DAYS))
               .add_extension(x509.BasicConstraints(ca=authority, path_length=0 if authority else None), critical=True))
    if authority:
        builder = builder.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
    else:  # every Dask process is a TLS server and a client of the others
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                                ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(folder: str | Path, course: str = "course-lab") -> Path:
    """The authority and one certificate per role (`ROLES`) in `folder`; refuses to overwrite."""
    from cryptography.hazmat.primitives import serialization

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    if (folder / "ca.pem").exists():
        raise FileExistsError(f"{folder} already holds certificates; remove it to make new ones")
    authority_name = f"{course} grading authority"
    ca_key = _key()
    ca = _certificate(authority_name, ca_key, authority_name, ca_key, authority=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / "ca-key.pem", ca_key)
    for role in ROLES:
        key = _key()
        cert = _certificate(f"{course}-{role}", key, authority_name, ca_key, authority=False)
        (folder / f"{role}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(folder / f"{role}-key.pem", key)
    return folder


def security(folder: str | Path, *roles: str):
    """`distributed.Security` for `roles` (default: the TA's client) from the files
    `make_certificates` wrote: mutual TLS, encryption required. A process that plays several
    roles (a jobqueue cluster's scheduler, in the TA's process) gets them all."""
    from distributed import Security

    folder, roles = Path(folder), roles or ("client",)
    needed = [folder / "ca.pem", *(folder / f"{role}{end}" for role in roles for end in (".pem", "-key.pem"))]
    missing = [f.name for f in needed if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: make them with `course-lab cluster-certs "
                                f"{folder}` (docs/grading.md)")
    files = {"tls_ca_file": str(folder / "ca.pem")}
    for role in roles:
        files[f"tls_{role}_cert"] = str(folder / f"{role}.pem")
        files[f"tls_{role}_key"] = str(folder / f"{role}-key.pem")
    return Security(require_encryption=True, **files)


def is_loopback(address: str) -> bool:
    """Whether a scheduler address (`tcp://HOST:PORT`, `inproc://...`) stays on this machine."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme == "inproc":
        return True
    host = parsed.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InsecureScheduler(RuntimeError):
    """A scheduler address that anyone on the network could drive."""


def check_address(address: str, security, *, insecure: bool = False) -> list[str]:
    """Refuse a scheduler that is neither TLS nor on loopback (unless `insecure`); the report's
    warnings for what was allowed."""
    scheme = urlparse(address).scheme if "://" in address else "tcp"
    if scheme == "tls":
        if security is None:
            raise InsecureScheduler(f"{address} is a TLS scheduler: pass the folder of certificates (--tls DIR)")
        return []
    if is_loopback(address):
        return []
    if not insecure:
        raise InsecureScheduler(
            f"refusing to grade through {address}: a plain {scheme}:// scheduler off this machine lets anyone who "
            "reaches it run code on the grading workers and read the hidden checks. Start the cluster with TLS "
            "(course-lab cluster-certs DIR; docs/grading.md) and pass --scheduler tls://HOST:PORT --tls DIR, or "
            "pass --insecure-scheduler if this network is yours alone")
    return [f"WARNING: UNENCRYPTED CLUSTER (--insecure-scheduler): graded through {address}, which anyone on its "
            "network could drive (run code on the workers, read the hidden checks, change results)"]
