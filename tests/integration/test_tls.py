"""bucketfs over HTTPS: certificate verification on by default, ca_file=, no_verify_ssl.

A throwaway CA and a server certificate for "localhost" are made with the openssl command
in a temp dir when the module starts (no key is ever committed); an AuditProxy serving
HTTPS with that certificate stands in front of the test server, so every request is still
audited (signatures are checked against the Host header sent over TLS). Mount failures
must come at once, with one line on stderr that names the certificate problem.
"""
import os
import subprocess
import time

import pytest

import conftest
from conftest import start_proxy, stop_proxy
from helpers import s3_body

FAIL_WITHIN = 5      # seconds: a refused certificate is no reason to retry or wait


def _openssl(*args, cwd):
    res = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert res.returncode == 0, f"openssl {' '.join(args)} failed:\n{res.stdout}"


def _make_ca(d, name):
    """A self-signed CA certificate d/name.pem with its key d/name.key."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=bucketfs test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return d / f"{name}.pem"


def _make_server_cert(d, ca, name, dns):
    """d/name.pem + d/name.key: a server certificate for DNS name `dns`, signed by ca."""
    (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{dns}\nbasicConstraints=CA:FALSE\n"
                                   "keyUsage=critical,digitalSignature\n"
                                   "extendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={dns}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
             "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


class _TLS:
    pass


@pytest.fixture(scope="module")
def tls(s3server, tmp_path_factory):
    """.proxy (HTTPS AuditProxy, certificate for localhost signed by .ca), .ca (the CA
    that signed it), .other_ca (a CA that did not)."""
    d = tmp_path_factory.mktemp("tls")
    t = _TLS()
    t.ca = _make_ca(d, "ca")
    t.other_ca = _make_ca(d, "other-ca")
    cert, key = _make_server_cert(d, "ca", "server", "localhost")
    t.proxy = start_proxy(s3server, tls=(str(cert), str(key)))
    yield t
    stop_proxy(t.proxy)


def _mount_fails(mount, bucket, opts):
    """Mounts the normal (daemonizing) way, expecting failure; returns the one output line."""
    t0 = time.monotonic()
    res = mount(bucket, opts=opts, daemon=True, check=False)
    took = time.monotonic() - t0
    assert res.returncode != 0, f"mount succeeded with {opts}:\n{res.stdout}"
    lines = res.stdout.splitlines()
    assert len(lines) == 1, f"want exactly one line on stderr, got:\n{res.stdout}"
    assert took < FAIL_WITHIN, f"the mount took {took:.1f}s to fail: {res.stdout}"
    print(lines[0])
    return lines[0]


def _write_and_check(m, s3, bucket, name, data):
    p = os.path.join(m.path, name)
    with open(p, "wb") as f:
        f.write(data)
    with open(p, "rb") as f:
        assert f.read() == data
    assert s3_body(s3, bucket, name) == data


def test_tls_mount_with_ca_file(mount, bucket, s3, tls, proxy):
    port = tls.proxy.port
    m = mount(bucket, opts=[f"endpoint={tls.proxy.endpoint}", f"ca_file={tls.ca}"])
    data = os.urandom(300_000)
    _write_and_check(m, s3, bucket, "over-tls.bin", data)
    m.unmount()
    assert s3_body(s3, bucket, "over-tls.bin") == data

    reqs = tls.proxy.requests()
    assert any(r.op == "PutObject" and r.key == "over-tls.bin" for r in reqs), \
        [f"{r.op} {r.target}" for r in reqs]
    # path_style over https: Host and SNI are the endpoint's host, the bucket is in the path
    for r in reqs:
        assert r.sni == "localhost", f"{r.op} {r.target}: SNI {r.sni!r}"
        assert r.host == f"localhost:{port}", f"{r.op} {r.target}: Host {r.host!r}"
        assert r.target.startswith(f"/{bucket}/") or r.target.startswith(f"/{bucket}?"), \
            r.target
    assert tls.proxy.tls_failures() == []
    assert proxy.requests() == [], "the plain-HTTP proxy was used"


def test_tls_wrong_ca_fails_at_mount(mount, bucket, tls):
    line = _mount_fails(mount, bucket, [f"endpoint={tls.proxy.endpoint}",
                                        f"ca_file={tls.other_ca}"])
    assert line.startswith("bucketfs: ") and tls.proxy.endpoint in line, line
    assert "certificate" in line and "SSL certificate problem" in line, line
    assert str(tls.other_ca) in line, line
    # the client refused the certificate during the handshake; nothing was sent (the
    # proxy's thread may note the failed handshake a moment after bucketfs exited)
    assert tls.proxy.requests() == []
    assert conftest._wait(lambda: any("UNKNOWN_CA" in f.upper()
                                      for f in tls.proxy.tls_failures()), 5), \
        tls.proxy.tls_failures()


def test_tls_certificate_for_another_host_fails(mount, bucket, tls):
    # the certificate is for localhost; 127.0.0.1 is the same server under another name
    endpoint = f"https://127.0.0.1:{tls.proxy.port}"
    line = _mount_fails(mount, bucket, [f"endpoint={endpoint}", f"ca_file={tls.ca}"])
    assert endpoint in line and "certificate" in line, line
    assert "'127.0.0.1'" in line and "subject name" in line, line
    assert tls.proxy.requests() == []


def test_tls_verification_is_on_by_default(mount, bucket, tls):
    line = _mount_fails(mount, bucket, [f"endpoint={tls.proxy.endpoint}"])
    assert "SSL certificate problem" in line and "system's CA certificates" in line, line
    assert tls.proxy.requests() == []


def test_tls_no_verify_ssl_warns_and_works(mount, bucket, s3, tls):
    m = mount(bucket, opts=[f"endpoint={tls.proxy.endpoint}", f"ca_file={tls.other_ca}",
                            "no_verify_ssl"], daemon=True)
    lines = [ln for ln in m.log_text().splitlines() if not ln.startswith("=== start")]
    assert len(lines) == 1, m.log_text()
    assert lines[0].startswith("bucketfs: warning: no_verify_ssl") and \
        tls.proxy.endpoint in lines[0], lines[0]
    _write_and_check(m, s3, bucket, "insecure.txt", b"not verified, still encrypted\n")
    m.unmount()
    assert tls.proxy.requests(), "no request went through the TLS proxy"


def test_tls_missing_ca_file(mount, bucket, tls, test_dir):
    missing = test_dir / "no-such-ca.pem"
    line = _mount_fails(mount, bucket, [f"endpoint={tls.proxy.endpoint}",
                                        f"ca_file={missing}"])
    assert line == f"bucketfs: ca_file {missing}: No such file or directory", line


def test_tls_https_to_a_plain_http_server(mount, bucket, proxy):
    endpoint = f"https://localhost:{proxy.port}"
    line = _mount_fails(mount, bucket, [f"endpoint={endpoint}"])
    assert endpoint in line and "TLS handshake failed" in line, line
