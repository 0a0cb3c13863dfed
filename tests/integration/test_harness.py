"""Tests of the test harness itself: the audit proxy and the mount fixtures.

They show that the proxy's checks pass correct clients and catch wrong ones
(a harness check that cannot fail would hide bucketfs bugs), that operations
are counted right, that faults are injected as documented, and that the
mount/unmount plumbing works, using s3fs 1.90 as the client because it does
not depend on bin/bucketfs.
"""

import base64
import datetime
import hashlib
import http.client
import os
import socket
import subprocess
import time

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import audit_proxy
import conftest
from conftest import ACCESS_KEY, SECRET_KEY, make_client

# Keys that stress URI encoding: space, '+', '%', unicode, sub-delimiters, '~'.
SPECIAL_KEYS = ["plain", "with space", "a+b", "100%", "ünï/cödé ✓", "x=y&z;w,v",
                "til~de", "paren(1)*!'$@:", "dir/sub/"]


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def via_proxy(proxy):
    """boto3 client that talks to S3 through the strict audit proxy."""
    return make_client(proxy.endpoint)


def send_signed(endpoint, method, target, body=b"", headers=None, secret=SECRET_KEY,
                timestamp=None, payload_hash=None, send_target=None, send_body=None,
                conn=None):
    """Sign a request with botocore's S3 SigV4 signer and send it raw.

    target is the request target that is signed; send_target/send_body (if
    given) are sent instead, to tamper with a request after signing.
    timestamp overrides the signing time ("YYYYMMDDTHHMMSSZ"); payload_hash
    the x-amz-content-sha256 value. Returns (status, body bytes).
    """
    host = endpoint.split("://", 1)[1]
    req = AWSRequest(method=method, url=f"http://{host}{target}", data=body,
                     headers=dict(headers or {}))
    req.headers["X-Amz-Content-SHA256"] = payload_hash or hashlib.sha256(body).hexdigest()
    signer = S3SigV4Auth(Credentials(ACCESS_KEY, secret), "s3", "us-east-1")
    # add_auth() stamps the current time; run its steps to choose the time.
    req.context["timestamp"] = timestamp or datetime.datetime.utcnow().strftime(
        "%Y%m%dT%H%M%SZ")
    signer._set_necessary_date_headers(req)
    signature = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
    signer._inject_signature_to_request(req, signature)
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, timeout=30)
    try:
        payload = body if send_body is None else send_body
        conn.request(method, send_target or target, body=payload,
                     headers={**dict(req.headers.items()), "Host": host,
                              "Content-Length": str(len(payload))})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


def kinds(violations):
    return sorted({v.kind for v in violations})


# ------------------------------------------------------------ SigV4 ---------

# The worked examples of AWS's "Signature Calculations for the Authorization
# Header: Transferring Payload in a Single Chunk" page (S3 API reference):
# fixed credentials, time and expected signatures computed by AWS.
AWS_EXAMPLE_KEY = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
EMPTY = hashlib.sha256(b"").hexdigest()
AWS_EXAMPLES = [
    ("GET", "/test.txt", "", [("Range", "bytes=0-9"), ("x-amz-content-sha256", EMPTY)],
     EMPTY, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    ("PUT", "/test%24file.text", "",
     [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
      ("x-amz-content-sha256", hashlib.sha256(b"Welcome to Amazon S3.").hexdigest())],
     hashlib.sha256(b"Welcome to Amazon S3.").hexdigest(),
     "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
    ("GET", "/", "lifecycle", [("x-amz-content-sha256", EMPTY)], EMPTY,
     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ("GET", "/", "max-keys=2&prefix=J", [("x-amz-content-sha256", EMPTY)], EMPTY,
     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
]


@pytest.mark.parametrize("method,path,query,extra,payload,signature", AWS_EXAMPLES)
def test_signature_recomputation_matches_aws_examples(method, path, query, extra, payload,
                                                      signature):
    headers = http.client.HTTPMessage()
    headers["Host"] = "examplebucket.s3.amazonaws.com"
    headers["x-amz-date"] = "20130524T000000Z"
    for name, value in extra:
        headers[name] = value
    signed = sorted(k.lower() for k in headers.keys())
    got, _ = audit_proxy.sigv4_expected(method, path, audit_proxy.canonical_query(query),
                                        headers, signed, AWS_EXAMPLE_KEY[1], AWS_EXAMPLE_KEY[0],
                                        "20130524T000000Z", "us-east-1", payload)
    assert got == signature
    # and a different secret gives a different signature
    bad, _ = audit_proxy.sigv4_expected(method, path, audit_proxy.canonical_query(query),
                                        headers, signed, "not-the-secret", AWS_EXAMPLE_KEY[0],
                                        "20130524T000000Z", "us-east-1", payload)
    assert bad != signature


def test_boto3_through_proxy_has_no_violations(proxy, via_proxy, s3, bucket):
    for key in SPECIAL_KEYS:
        body = f"body of {key}".encode() * 3
        via_proxy.put_object(Bucket=bucket, Key=key, Body=body, ContentMD5=md5_b64(body))
        assert via_proxy.get_object(Bucket=bucket, Key=key)["Body"].read() == body
        assert via_proxy.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    listed = via_proxy.list_objects_v2(Bucket=bucket, Prefix="ünï/", Delimiter="/")
    assert [o["Key"] for o in listed["Contents"]] == ["ünï/cödé ✓"]
    via_proxy.copy_object(Bucket=bucket, Key="copy ✓", CopySource={"Bucket": bucket, "Key": "a+b"})
    assert s3.get_object(Bucket=bucket, Key="copy ✓")["Body"].read() == b"body of a+b" * 3
    via_proxy.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "plain"},
                                                                {"Key": "100%"}]})
    via_proxy.delete_object(Bucket=bucket, Key="with space")
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert not left & {"plain", "100%", "with space"} and "a+b" in left
    assert proxy.violations() == []
    assert proxy.stats()["PutObject"] == len(SPECIAL_KEYS)


def test_large_bodies_stream_and_verify(proxy, via_proxy, s3, bucket):
    big = os.urandom(audit_proxy.SPOOL_LIMIT + 3 * 1024 * 1024)   # spooled to disk
    via_proxy.put_object(Bucket=bucket, Key="big", Body=big, ContentMD5=md5_b64(big))
    assert via_proxy.get_object(Bucket=bucket, Key="big")["Body"].read() == big
    part = os.urandom(5 * 1024 * 1024)
    up = via_proxy.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etags = [via_proxy.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n,
                                   Body=part, ContentMD5=md5_b64(part))["ETag"]
             for n in (1, 2)]
    via_proxy.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up,
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in
                                   zip((1, 2), etags)]})
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == part * 2
    assert proxy.violations() == []
    st = proxy.stats()
    xml_up = sum(r.bytes_up for r in proxy.requests() if r.op == "CompleteMultipartUpload")
    expected_up = len(big) + 2 * len(part) + xml_up
    assert st["bytes_up"] == expected_up
    assert st["bytes_down"] >= len(big)


def test_wrong_secret_is_flagged(proxy, s3, bucket):
    bad = make_client(proxy.endpoint, secret_key="not-the-secret")
    with pytest.raises(ClientError) as err:
        bad.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=md5_b64(b"data"))
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert kinds(proxy.take_violations()) == ["signature"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)       # not forwarded

    unknown = make_client(proxy.endpoint, access_key="NOBODY")
    with pytest.raises(ClientError):
        unknown.head_bucket(Bucket=bucket)
    assert kinds(proxy.take_violations()) == ["credential"]


def test_tampered_requests_are_flagged(proxy, s3, bucket):
    ep = proxy.endpoint
    # Control: a correctly signed raw request passes, so the cases below fail
    # because of what they change, not because of send_signed().
    assert send_signed(ep, "PUT", f"/{bucket}/k", b"hello",
                       {"Content-MD5": md5_b64(b"hello")})[0] == 200
    assert proxy.take_violations() == []

    # signed for one key, sent to another
    status, _ = send_signed(ep, "GET", f"/{bucket}/k", send_target=f"/{bucket}/other")
    assert status == 403 and kinds(proxy.take_violations()) == ["signature"]
    # body swapped after signing (same length)
    status, body = send_signed(ep, "PUT", f"/{bucket}/k", b"hello", send_body=b"HELLO")
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body
    assert "content-sha256" in kinds(proxy.take_violations())
    # signed payload hash that is not the body's
    status, _ = send_signed(ep, "PUT", f"/{bucket}/k", b"hello",
                            {"Content-MD5": md5_b64(b"hello")},
                            payload_hash=hashlib.sha256(b"other").hexdigest())
    assert status == 400 and kinds(proxy.take_violations()) == ["content-sha256"]
    # UNSIGNED-PAYLOAD is refused in strict mode
    send_signed(ep, "PUT", f"/{bucket}/k", b"hello", {"Content-MD5": md5_b64(b"hello")},
                payload_hash="UNSIGNED-PAYLOAD")
    assert kinds(proxy.take_violations()) == ["content-sha256"]
    # a signature made an hour ago
    old = (datetime.datetime.utcnow() - datetime.timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ")
    status, _ = send_signed(ep, "GET", f"/{bucket}/k", timestamp=old)
    assert status == 403 and kinds(proxy.take_violations()) == ["clock-skew"]
    # '+' left unencoded in the path: signed consistently, but not canonical
    # (s3rver takes the path as it comes: no such key; RGW reads '+' as a space and so
    # signs another canonical path: refused. Either way the proxy flags it.)
    status, _ = send_signed(ep, "GET", f"/{bucket}/a+b")
    assert status == (403 if conftest.on_rgw else 404)
    assert kinds(proxy.take_violations()) == ["encoding"]
    # '/' left unencoded in a query value (as s3fs does), canonical form signed
    status, _ = send_signed(ep, "GET", f"/{bucket}?list-type=2&prefix=a%2Fb",
                            send_target=f"/{bucket}?list-type=2&prefix=a/b")
    assert status == 200 and kinds(proxy.take_violations()) == ["encoding"]
    # ... and the raw form signed: S3 canonicalises the query it decoded, so
    # that signature does not match
    status, _ = send_signed(ep, "GET", f"/{bucket}?list-type=2&prefix=a/b")
    assert status == 403 and kinds(proxy.take_violations()) == ["encoding", "signature"]
    # an x-amz-* header added after signing
    host = ep.split("://")[1]
    req = AWSRequest(method="GET", url=f"http://{host}/{bucket}/k")
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request("GET", f"/{bucket}/k", headers={**dict(req.headers.items()),
                                                 "x-amz-meta-extra": "1"})
    assert conn.getresponse().status == 200
    conn.close()
    assert kinds(proxy.take_violations()) == ["unsigned-header"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"hello"


def test_content_md5_is_checked(proxy, via_proxy, s3, bucket):
    with pytest.raises(ClientError) as err:
        via_proxy.put_object(Bucket=bucket, Key="k", Body=b"data",
                             ContentMD5=md5_b64(b"something else"))
    assert err.value.response["Error"]["Code"] == "BadDigest"
    assert kinds(proxy.take_violations()) == ["content-md5"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)

    # strict mode requires Content-MD5 (botocore adds one to put_object by itself)
    assert send_signed(proxy.endpoint, "PUT", f"/{bucket}/k", b"data")[0] == 200
    assert kinds(proxy.take_violations()) == ["content-md5-missing"]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


def test_violation_fails_the_test(proxy, bucket):
    """The autouse audit fixture turns a leftover violation into a test error."""
    send_signed(proxy.endpoint, "PUT", f"/{bucket}/k", b"x")     # no Content-MD5
    assert len(proxy.violations()) == 1
    gen = conftest._audit.__wrapped__(None)
    next(gen)                                                    # resets the proxies
    assert proxy.violations() == []
    send_signed(proxy.endpoint, "PUT", f"/{bucket}/k", b"x")
    with pytest.raises(pytest.fail.Exception, match="content-md5-missing"):
        next(gen)
    assert proxy.violations() == []


# ------------------------------------------------------------ counting ------

def test_operations_are_classified(proxy, via_proxy, bucket):
    c = via_proxy
    c.head_bucket(Bucket=bucket)
    c.put_object(Bucket=bucket, Key="a", Body=b"12345", ContentMD5=md5_b64(b"12345"))
    c.put_object(Bucket=bucket, Key="dir/b", Body=b"xyz", ContentMD5=md5_b64(b"xyz"))
    c.head_object(Bucket=bucket, Key="a")
    assert c.get_object(Bucket=bucket, Key="a", Range="bytes=1-2")["Body"].read() == b"23"
    c.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "a"})
    c.list_objects_v2(Bucket=bucket, Delimiter="/")
    c.list_objects(Bucket=bucket)
    up = c.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    part = b"p" * (5 * 1024 * 1024)
    etag = c.upload_part(Bucket=bucket, Key="m", UploadId=up, PartNumber=1, Body=part,
                         ContentMD5=md5_b64(part))["ETag"]
    c.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=up,
                                MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    c.delete_object(Bucket=bucket, Key="c")
    c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "dir/b"}]})
    c.list_buckets()
    st = proxy.stats()
    bytes_up, bytes_down = st.pop("bytes_up"), st.pop("bytes_down")
    assert st == {"HeadBucket": 1, "PutObject": 2, "HeadObject": 1, "GetObject": 1,
                  "CopyObject": 1, "ListObjectsV2": 1, "ListObjects": 1,
                  "CreateMultipartUpload": 1, "UploadPart": 1, "CompleteMultipartUpload": 1,
                  "DeleteObject": 1, "DeleteObjects": 1, "ListBuckets": 1}
    delete_xml = [r for r in proxy.requests() if r.op in ("DeleteObjects",
                                                          "CompleteMultipartUpload")]
    assert bytes_up == 5 + 3 + len(part) + sum(r.bytes_up for r in delete_xml)
    get = [r for r in proxy.requests() if r.op == "GetObject"]
    assert get[0].bytes_down == 2 and get[0].range == "bytes=1-2" and get[0].status == 206
    assert bytes_down == sum(r.bytes_down for r in proxy.requests())
    # classification of what the SDK cannot send to s3rver
    for method, target, headers, op in [
            ("DELETE", "/b/k?uploadId=1", {}, "AbortMultipartUpload"),
            ("GET", "/b/k?uploadId=1", {}, "ListParts"),
            ("PUT", "/b/k?partNumber=1&uploadId=1", {"x-amz-copy-source": "/b/x"},
             "UploadPartCopy"),
            ("GET", "/b?uploads", {}, "ListMultipartUploads"),
            ("PUT", "/b", {}, "CreateBucket"), ("DELETE", "/b/", {}, "DeleteBucket")]:
        path, query = audit_proxy.split_target(target)
        assert audit_proxy.classify(method, path, query, headers) == op
    proxy.reset()
    assert proxy.stats() == {"bytes_up": 0, "bytes_down": 0} and proxy.requests() == []


def test_list_pagination_through_proxy(proxy, via_proxy, s3, bucket):
    """ListObjectsV2 continuation tokens work (s3rver needs OpenSSL's legacy DES)."""
    keys = [f"d/{i:02d}" for i in range(7)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    seen, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = via_proxy.list_objects_v2(Bucket=bucket, Prefix="d/", MaxKeys=3, **kw)
        seen += [o["Key"] for o in page.get("Contents", [])]
        pages += 1
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == keys and pages == 3
    assert proxy.stats()["ListObjectsV2"] == 3


def test_keepalive_connection_is_reused(proxy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    host = proxy.endpoint.split("://")[1]
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.connect()
    sock = conn.sock
    for _ in range(3):
        assert send_signed(proxy.endpoint, "GET", f"/{bucket}/k", conn=conn) == (200, b"v")
        assert send_signed(proxy.endpoint, "HEAD", f"/{bucket}/k", conn=conn)[0] == 200
    assert conn.sock is sock                   # no reconnect happened
    conn.close()
    assert proxy.stats()["GetObject"] == 3 and proxy.stats()["HeadObject"] == 3


# ------------------------------------------------------------ faults --------

def test_fault_error_responses(proxy, via_proxy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    f = proxy.fault("error", op="GetObject", count=2, status=503)
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            via_proxy.get_object(Bucket=bucket, Key="k")
        assert err.value.response["Error"]["Code"] == "SlowDown"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert via_proxy.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert f.hits == 2 and f.count == 0
    proxy.fault("error", op="PutObject", key=r"^dir/", count=None, status=500)
    with pytest.raises(ClientError) as err:
        via_proxy.put_object(Bucket=bucket, Key="dir/x", Body=b"1", ContentMD5=md5_b64(b"1"))
    assert err.value.response["Error"]["Code"] == "InternalError"
    via_proxy.put_object(Bucket=bucket, Key="other", Body=b"1", ContentMD5=md5_b64(b"1"))
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]} == {"k", "other"}
    assert [r.fault for r in proxy.requests() if r.op == "GetObject"] == ["error", "error", None]


def test_fault_flip_corrupts_one_byte(proxy, via_proxy, s3, bucket):
    data = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="blob", Body=data)
    proxy.fault("flip", key="^blob$", count=1)
    got = via_proxy.get_object(Bucket=bucket, Key="blob")["Body"].read()
    assert len(got) == len(data)
    diff = [i for i in range(len(data)) if got[i] != data[i]]
    assert diff == [500] and got[500] == data[500] ^ 0xFF
    assert via_proxy.get_object(Bucket=bucket, Key="blob")["Body"].read() == data
    proxy.fault("flip", offset=3)
    got = via_proxy.get_object(Bucket=bucket, Key="blob", Range="bytes=100-199")["Body"].read()
    assert got[3] == data[103] ^ 0xFF and got[:3] + got[4:] == data[100:103] + data[104:200]


def test_fault_disconnect_mid_body(proxy, s3, bucket):
    data = os.urandom(100000)
    s3.put_object(Bucket=bucket, Key="blob", Body=data)
    proxy.fault("disconnect", op="GetObject")
    host = proxy.endpoint.split("://")[1]
    conn = http.client.HTTPConnection(host, timeout=30)
    with pytest.raises(http.client.IncompleteRead) as err:
        send_signed(proxy.endpoint, "GET", f"/{bucket}/blob", conn=conn)
    assert len(err.value.partial) == len(data) // 2
    conn.close()
    assert proxy.requests()[-1].bytes_down == len(data) // 2
    # a response without body is lost entirely, after the server acted on it
    proxy.fault("disconnect", op="DeleteObject")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        send_signed(proxy.endpoint, "DELETE", f"/{bucket}/blob")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    # before=True: dropped before the server sees it
    s3.put_object(Bucket=bucket, Key="blob", Body=b"x")
    proxy.fault("disconnect", op="DeleteObject", before=True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        send_signed(proxy.endpoint, "DELETE", f"/{bucket}/blob")
    assert s3.get_object(Bucket=bucket, Key="blob")["Body"].read() == b"x"


def test_fault_delay(proxy, via_proxy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    proxy.fault("delay", op="HeadObject", seconds=1.0)
    t = time.monotonic()
    via_proxy.head_object(Bucket=bucket, Key="k")
    assert time.monotonic() - t >= 1.0
    t = time.monotonic()
    via_proxy.head_object(Bucket=bucket, Key="k")
    assert time.monotonic() - t < 1.0


# ------------------------------------------------------------ mounts --------

def test_bfs_bin_fails_when_missing(monkeypatch):
    monkeypatch.setattr(conftest, "BFS_BIN", conftest.REPO / "bin" / "no-such-bucketfs")
    with pytest.raises(pytest.fail.Exception, match="run make first"):
        conftest.bfs_bin()


def test_peer_mount_roundtrip(peer_mount, peer_proxy, s3, bucket):
    s3.put_object(Bucket=bucket, Key="from boto3.txt", Body=b"hello from boto3")
    m = peer_mount(bucket)
    assert os.path.ismount(m.path)
    assert os.listdir(m.path) == ["from boto3.txt"]
    with open(os.path.join(m.path, "from boto3.txt"), "rb") as f:
        assert f.read() == b"hello from boto3"
    data = os.urandom(3 * 1024 * 1024 + 17)
    with open(os.path.join(m.path, "written by s3fs+ü.bin"), "wb") as f:
        f.write(data)
    m.unmount()
    assert not os.path.ismount(m.path)
    assert m.returncode == 0
    assert s3.get_object(Bucket=bucket, Key="written by s3fs+ü.bin")["Body"].read() == data
    st = peer_proxy.stats()
    assert st["PutObject"] >= 1 and st["bytes_up"] >= len(data)
    assert peer_proxy.violations() == []


def test_peer_mount_prefix_and_remount(peer_mount, s3, bucket):
    s3.put_object(Bucket=bucket, Key="sub/inner.txt", Body=b"inner")
    s3.put_object(Bucket=bucket, Key="outer.txt", Body=b"outer")
    m = peer_mount(bucket, prefix="sub")
    assert os.listdir(m.path) == ["inner.txt"]
    with open(os.path.join(m.path, "new.txt"), "w") as f:
        f.write("new")
    m.remount()
    assert sorted(os.listdir(m.path)) == ["inner.txt", "new.txt"]
    assert s3.get_object(Bucket=bucket, Key="sub/new.txt")["Body"].read() == b"new"
    assert "=== start 2:" in m.log_text()


def test_peer_mount_kill9(peer_mount, s3, bucket):
    m = peer_mount(bucket)
    pid = m.pid
    m.kill9()
    assert not conftest._alive(pid)
    assert not conftest.is_mounted(m.path)
    assert m.returncode == -9
    m.remount()
    assert m.pid != pid and os.path.ismount(m.path)


def test_peer_mount_daemon_mode(peer_mount, s3, bucket):
    m = peer_mount(bucket, daemon=True)
    assert m.returncode == 0 and m.proc is None
    assert conftest._alive(m.pid)
    with open(os.path.join(m.path, "d.txt"), "w") as f:
        f.write("daemon")
    m.unmount()
    assert not conftest._alive(m.pid)
    assert s3.get_object(Bucket=bucket, Key="d.txt")["Body"].read() == b"daemon"


def test_mount_check_false_returns_status(peer_mount, bucket):
    r = peer_mount(bucket, opts=["no_such_option_xyz"], check=False)
    assert isinstance(r, subprocess.CompletedProcess)
    assert r.returncode != 0, r.stdout
    assert "no_such_option_xyz" in r.stderr


def test_proxy_stops_cleanly(s3server):
    p = audit_proxy.AuditProxy(s3server.endpoint).start()
    host, port = p.endpoint.split("://")[1].split(":")
    idle = socket.create_connection((host, int(port)))      # an idle keep-alive client
    p.stop()
    idle.settimeout(5)
    try:
        assert idle.recv(1) == b""                           # closed by stop()
    except ConnectionResetError:
        pass                                                 # or reset: closed too
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2)


def test_bucketfs_mount_plumbing(mount, proxy, s3, bucket):
    """The mount fixture with bin/bucketfs: foreground and daemon mode."""
    s3.put_object(Bucket=bucket, Key="seed.txt", Body=b"seed")
    m = mount(bucket)
    assert os.path.ismount(m.path) and m.proc is not None
    with open(os.path.join(m.path, "seed.txt"), "rb") as f:
        assert f.read() == b"seed"
    with open(os.path.join(m.path, "fg.txt"), "wb") as f:
        f.write(b"foreground")
    m.unmount()
    assert m.returncode == 0 and not conftest._alive(m.pid)
    assert s3.get_object(Bucket=bucket, Key="fg.txt")["Body"].read() == b"foreground"

    d = mount(bucket, daemon=True)
    assert d.returncode == 0 and d.proc is None and conftest._alive(d.pid)
    with open(os.path.join(d.path, "fg.txt"), "rb") as f:
        assert f.read() == b"foreground"
    d.unmount()
    assert not conftest._alive(d.pid)
    assert proxy.stats().get("GetObject", 0) + proxy.stats().get("HeadObject", 0) >= 1
