"""Auditing S3 reverse proxy for the bucketfs integration tests.

Clients use the proxy as their S3 endpoint (path-style, plain HTTP/1.1 with
keep-alive); it forwards every request to the real test server (s3rver) and
on the way:

* verifies each request independently of the client and of s3rver (s3rver
  accepts any well-formed SigV4 signature without checking it):
  - the AWS SigV4 signature, recomputed with botocore's S3 signer from the
    method, the request target exactly as received, the Host header as the
    client sent it, the headers named in SignedHeaders and X-Amz-Date, using
    the secret the proxy was given for the access key (``signature``);
  - the credential scope: known access key, date, region, service (``credential``);
  - X-Amz-Date within 15 minutes of now (``clock-skew``); every x-amz-* header,
    host and x-amz-content-sha256 signed (``unsigned-header``);
  - x-amz-content-sha256 equals the SHA-256 of the body actually received
    (``content-sha256``); UNSIGNED-PAYLOAD is a violation in strict mode;
  - Content-MD5, when present, equals the MD5 of the body (``content-md5``);
    strict mode requires it on PutObject and UploadPart, S3 itself on
    DeleteObjects (``content-md5-missing``);
  - strict mode: the path and query are encoded canonically, i.e. exactly as
    SigV4 canonicalises them (RFC 3986 unreserved characters literal, everything
    else %XX in upper case, '/' literal in the path only), so the request
    means the same thing to every S3 implementation (``encoding``);
  - transfer framing S3 does not accept (chunked uploads, aws-chunked
    streaming signatures) (``unsupported``).
  Requests that real S3 would refuse (bad signature, credential or body hash)
  get S3's error response and are not forwarded. An exception inside the
  proxy is recorded too (``proxy-error``), so it cannot pass unnoticed.
* counts requests by S3 operation and body bytes up/down, and keeps a log;
* injects faults on demand: error responses (500 InternalError / 503
  SlowDown ...), a flipped byte in response bodies, a connection closed
  mid-body, delays;
* optionally serves HTTPS (tls=(certfile, keyfile)): the endpoint is then
  https://localhost:PORT, each request records the TLS server name (SNI) the
  client sent and its Host header, and failed handshakes are kept
  (tls_failures(), e.g. a client that does not trust the certificate).

Modes: "strict" (for bucketfs) and "peer" (for s3fs as a reference client:
UNSIGNED-PAYLOAD allowed, no Content-MD5 or canonical-encoding requirement;
signatures, scopes and any hash or MD5 that is sent are still verified).
s3fs 1.90 signs real payload hashes, sends no Content-MD5 and leaves '/'
unencoded in query values (signing the canonical %2F form), which is why it
passes the peer checks but not the strict ones.

Two forwarding adjustments are made for s3rver 3.7.1: x-amz-copy-source is
re-encoded (after verification) so that s3rver finds keys containing '+', '&',
'=' ... (see s3rver_copy_source()), and a request signed with any key pair the
proxy accepts is passed on under s3rver's one access key, S3RVER (see
s3rver_authorization()). A real server checks the signature itself:
s3rver_fixups=False forwards every request byte for byte.

Use in-process (the pytest fixtures do):

    p = AuditProxy("http://127.0.0.1:4568", mode="strict").start()
    p.endpoint            # "http://127.0.0.1:PORT"
    p.stats()             # {"PutObject": 2, ..., "bytes_up": N, "bytes_down": M}
    p.requests()          # [RequestRecord(op, method, target, key, status, ...)]
    p.violations()        # [Violation(kind, op, method, target, detail)]
    p.take_violations()   # same, and clears them (for tests that provoke them)
    p.fault("error", op="GetObject", count=2, status=503)
    p.reset()             # clears counters, log, violations and faults
    p.credentials["KEY2"] = "SECRET2"   # another key pair it accepts (a second account)
    p.session_tokens["TMPKEY"] = {"tok1"}   # TMPKEY needs one of these tokens (or a
                          # function token -> bool says which are valid), else 400
                          # ExpiredToken (S3's answer to an expired temporary key)
    p.stop()

    t = AuditProxy(upstream, tls=("cert.pem", "key.pem")).start()
    t.endpoint            # "https://localhost:PORT" (listening on 127.0.0.1)
    t.tls_failures()      # ["[SSL: TLSV1_ALERT_UNKNOWN_CA] ...", ...]

or standalone for manual debugging (prints violations as they happen):

    /usr/bin/python3 tests/proxy/audit_proxy.py --upstream http://127.0.0.1:4568
"""

import base64
import binascii
import datetime
import hashlib
import http.client
import http.server
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote, unquote, unquote_to_bytes, urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

# Request bodies up to this size are held in memory; larger ones are spooled
# to an anonymous temporary file (hashing is incremental either way).
SPOOL_LIMIT = 10 * 1024 * 1024
COPY_CHUNK = 256 * 1024
MAX_SKEW = datetime.timedelta(minutes=15)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer",
              "transfer-encoding", "upgrade", "expect", "proxy-authorization",
              "proxy-authenticate"}
AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)"
    r"\s*,\s*Signature=([0-9a-fA-F]+)\s*$")
SIGV4_SAFE = "-_.~"   # RFC 3986 unreserved, besides ALPHA / DIGIT


@dataclass
class Violation:
    """One request that broke a rule; str() is a one-line description."""
    kind: str
    op: str
    method: str
    target: str
    detail: str

    def __str__(self):
        return f"[{self.kind}] {self.op} {self.method} {self.target}: {self.detail}"


@dataclass
class RequestRecord:
    """One request seen by the proxy (bodies counted in bytes, not kept)."""
    op: str
    method: str
    target: str
    bucket: str
    key: Optional[str]
    range: Optional[str]
    status: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    fault: Optional[str] = None
    access_key: Optional[str] = None      # from the Authorization header's Credential
    session_token: Optional[str] = None   # X-Amz-Security-Token, if sent
    sni: Optional[str] = None      # TLS server name the client sent (TLS proxies only)
    host: Optional[str] = None     # the Host header


@dataclass
class Fault:
    """A fault to inject; see AuditProxy.fault()."""
    kind: str
    op: Optional[str]
    key: Optional["re.Pattern"]
    count: Optional[int]
    status: int = 503
    code: str = "SlowDown"
    offset: Optional[int] = None
    seconds: float = 0.0
    before: bool = False
    hits: int = 0

    def matches(self, op, key):
        if self.count is not None and self.count <= 0:
            return False
        if self.op is not None and self.op != op:
            return False
        if self.key is not None and not self.key.search(key or ""):
            return False
        return True


FAULT_KINDS = ("error", "flip", "short", "disconnect", "delay", "stall")
ERROR_CODES = {500: "InternalError", 503: "SlowDown", 400: "BadRequest",
               403: "AccessDenied", 404: "NoSuchKey", 409: "OperationAborted"}


# ---------------------------------------------------------------- parsing --

def split_target(target):
    """Split a request target into (raw path, raw query); accepts absolute form."""
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path or "/", query


def _raw_pairs(query):
    """(name, value) pairs of a raw query string, still percent-encoded."""
    pairs = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        pairs.append((name, value))
    return pairs


def _reencode(raw, safe):
    """Percent-decode to bytes (so any byte survives) and encode canonically."""
    return quote(unquote_to_bytes(raw.encode("latin-1", "replace")), safe=safe)


def query_pairs(query):
    """Decoded (name, value) pairs of a raw query string ('+' is literal)."""
    return [(unquote(n), unquote(v)) for n, v in _raw_pairs(query)]


def canonical_path(path):
    """The path as SigV4 wants it on the wire: each byte encoded exactly once."""
    return _reencode(path, "/" + SIGV4_SAFE)


def canonical_query(query):
    """SigV4 canonical query string: names and values encoded, pairs sorted."""
    pairs = [(_reencode(n, SIGV4_SAFE), _reencode(v, SIGV4_SAFE)) for n, v in _raw_pairs(query)]
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def wire_query_is_canonical(query):
    """True if every name and value in the raw query is encoded canonically."""
    return all(_reencode(raw, SIGV4_SAFE) == raw
               for pair in _raw_pairs(query) for raw in pair)


def split_bucket_key(path):
    """(bucket, key) of a path-style request; key None for bucket/service ops."""
    rest = path.lstrip("/")
    if not rest:
        return "", None
    bucket, sep, key = rest.partition("/")
    if not sep or key == "":
        return unquote(bucket), None
    return unquote(bucket), unquote(key)


_BUCKET_GET = [("uploads", "ListMultipartUploads"), ("location", "GetBucketLocation"),
               ("versions", "ListObjectVersions"), ("versioning", "GetBucketVersioning"),
               ("acl", "GetBucketAcl"), ("policy", "GetBucketPolicy"),
               ("cors", "GetBucketCors"), ("lifecycle", "GetBucketLifecycleConfiguration"),
               ("tagging", "GetBucketTagging"), ("website", "GetBucketWebsite")]
_BUCKET_SUB = {"acl": "Acl", "policy": "Policy", "cors": "Cors", "versioning": "Versioning",
               "lifecycle": "LifecycleConfiguration", "tagging": "Tagging",
               "website": "Website"}


def classify(method, path, query, headers):
    """Name the S3 operation of a path-style request (e.g. 'CopyObject')."""
    bucket, key = split_bucket_key(path)
    params = dict(query_pairs(query))
    copy = "x-amz-copy-source" in headers
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method}:service"
    if key is None:
        if method == "GET":
            if params.get("list-type") == "2":
                return "ListObjectsV2"
            for sub, name in _BUCKET_GET:
                if sub in params:
                    return name
            return "ListObjects"
        if method == "HEAD":
            return "HeadBucket"
        if method in ("PUT", "DELETE"):
            for sub, name in _BUCKET_SUB.items():
                if sub in params:
                    return ("PutBucket" if method == "PUT" else "DeleteBucket") + name
            return "CreateBucket" if method == "PUT" else "DeleteBucket"
        if method == "POST" and "delete" in params:
            return "DeleteObjects"
    else:
        if method == "GET":
            if "uploadId" in params:
                return "ListParts"
            if "acl" in params:
                return "GetObjectAcl"
            if "tagging" in params:
                return "GetObjectTagging"
            return "GetObject"
        if method == "HEAD":
            return "HeadObject"
        if method == "PUT":
            if "uploadId" in params and "partNumber" in params:
                return "UploadPartCopy" if copy else "UploadPart"
            if "acl" in params:
                return "PutObjectAcl"
            if "tagging" in params:
                return "PutObjectTagging"
            return "CopyObject" if copy else "PutObject"
        if method == "DELETE":
            if "uploadId" in params:
                return "AbortMultipartUpload"
            if "tagging" in params:
                return "DeleteObjectTagging"
            return "DeleteObject"
        if method == "POST":
            if "uploads" in params:
                return "CreateMultipartUpload"
            if "uploadId" in params:
                return "CompleteMultipartUpload"
            if "restore" in params:
                return "RestoreObject"
    return f"{method}:unknown"


def s3rver_copy_source(value):
    """Re-encode x-amz-copy-source for s3rver 3.7.1, which decodes it with JS
    decodeURI(): that leaves %2B, %3D, %26, ... encoded, so a source key with
    '+', '=', '&', ',', ';', ':', '@', '$', '?' or '#' is not found. Those
    characters go literal, everything else stays percent-encoded; the header
    the client signed was verified before this."""
    return quote(unquote(value), safe="/;?:@&=+$,#")


def s3rver_authorization(value):
    """s3rver 3.7.1 knows one account (S3RVER) and checks no signature: a request the proxy
    has verified with another of its key pairs is passed on under S3RVER's access key."""
    return re.sub(r"Credential=[^/,\s]+/", "Credential=S3RVER/", value, count=1)


def _header_text(value):
    """http.server decodes header bytes as latin-1; signers hash UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


# ---------------------------------------------------------------- SigV4 ----

class _ReceivedRequestSigner(S3SigV4Auth):
    """botocore's S3 SigV4 signer, fed a request as received.

    Only the signing primitives are used (canonical_request, string_to_sign,
    signature), never add_auth(), which would stamp the current time. The
    headers signed are exactly those the client listed in SignedHeaders, and
    the payload hash is the one the proxy computed from the body whenever the
    client sent no x-amz-content-sha256 header.
    """

    def __init__(self, credentials, region, signed_names, headers, body_sha256):
        super().__init__(credentials, "s3", region)
        self._signed_names = signed_names
        self._received = headers
        self._body_sha256 = body_sha256

    def headers_to_sign(self, request):
        selected = HTTPHeaders()
        for name in self._signed_names:
            for value in self._received.get_all(name) or []:
                selected[name] = _header_text(value)
        return selected

    def payload(self, request):
        return self._body_sha256


def sigv4_expected(method, path, query, headers, signed_names, secret, access_key,
                   timestamp, region, body_sha256):
    """Recompute a SigV4 header signature with botocore.

    path and query are used as given (S3 does not normalise the path; the query
    should be passed canonicalised); headers is a mapping with get_all()
    (http.client.HTTPMessage) holding the request headers as received.
    Returns (signature hex, canonical request).
    """
    host = headers.get("Host", "")
    url = f"http://{host}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, data=b"")
    for name in signed_names:          # only X-Amz-Content-SHA256 presence matters
        for value in headers.get_all(name) or []:
            request.headers[name] = _header_text(value)
    request.context["timestamp"] = timestamp
    signer = _ReceivedRequestSigner(Credentials(access_key, secret), region,
                                    signed_names, headers, body_sha256)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    return signer.signature(string_to_sign, request), canonical


def parse_amz_date(value):
    return datetime.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc)


# ---------------------------------------------------------------- server ---

def _remember_sni(sslsock, server_name, context):
    """SSLContext.sni_callback: keeps the name the client asked for on its socket."""
    sslsock.bfs_sni = server_name
    return None


class _Rejection(Exception):
    """The request must be answered with an S3 error instead of forwarded."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_body(code, message, resource, request_id):
    def esc(s):
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{esc(code)}</Code><Message>{esc(message)}</Message>"
            f"<Resource>{esc(resource)}</Resource><RequestId>{request_id}</RequestId>"
            "</Error>").encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive; every response is framed
    timeout = 120                     # idle keep-alive connections are dropped
    server_version = "bucketfs-audit-proxy"

    def log_message(self, fmt, *args):  # quiet; the proxy keeps its own log
        pass

    def setup(self):
        super().setup()
        self.server.proxy._track(self.connection, True)

    def handle(self):
        if isinstance(self.connection, ssl.SSLSocket):
            # the handshake runs here, in the connection's thread, not in accept()
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as e:
                self.server.proxy._tls_failed(e)
                self.close_connection = True
                return
        super().handle()

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.proxy._track(self.connection, False)

    def _dispatch(self):
        self.server.proxy._handle(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_PATCH = _dispatch


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # bucketfs opens up to 16 connections at once (more with several mounts): with the
    # default backlog of 5, SYNs dropped on a busy machine cost 1 s, 3 s, 7 s retries
    request_queue_size = 256
    tls = None                        # ssl.SSLContext: serve HTTPS

    def get_request(self):
        sock, addr = super().get_request()
        # a response is written as headers, then body: without TCP_NODELAY the body waits
        # for the client's delayed ACK of the headers (40 ms per GET, LIST or CopyObject)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class AuditProxy:
    """The proxy; thread-safe. See the module docstring for the API."""

    def __init__(self, upstream, mode="strict", credentials=None, region="us-east-1",
                 host="127.0.0.1", port=0, reject=True, on_violation=None,
                 s3rver_fixups=True, tls=None):
        if mode not in ("strict", "peer"):
            raise ValueError(f"mode must be 'strict' or 'peer', not {mode!r}")
        up = urlsplit(upstream)
        self.upstream_host, self.upstream_port = up.hostname, up.port or 80
        self.mode = mode
        self.credentials = dict(credentials or {"S3RVER": "S3RVER"})
        # temporary keys: access key -> set of session tokens still valid; a request with
        # such a key and another token (or none) gets 400 ExpiredToken, as from S3
        self.session_tokens = {}
        self.region = region
        self.reject = reject
        self.on_violation = on_violation
        self.s3rver_fixups = s3rver_fixups   # False for a real server (Ceph RGW)
        self._bind = (host, port)
        self._tls = None
        if tls is not None:               # (certfile, keyfile): HTTPS for clients
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(*tls)
            self._tls.sni_callback = _remember_sni
        self._tls_failures = []
        self._lock = threading.Lock()
        self._release = threading.Event()   # set: stalled requests go on
        self._conns = set()
        self._server = None
        self._thread = None
        self.reset()

    # -- lifecycle --
    def start(self):
        self._server = _Server(self._bind, _Handler)
        self._server.proxy = self
        self._server.tls = self._tls
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="audit-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:             # end idle keep-alive connections too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self):
        host, port = self._server.server_address[:2] if self._server else self._bind
        if self._tls is not None:
            return f"https://localhost:{port}"   # the name a test certificate is for
        return f"http://{host}:{port}"

    @property
    def port(self):
        return self._server.server_address[1] if self._server else self._bind[1]

    # -- observation --
    def reset(self):
        """Forget counters, the request log, violations and pending faults (stalled
        requests go on)."""
        with self._lock:
            self._counts = {}
            self._bytes_up = self._bytes_down = 0
            self._log = []
            self._violations = []
            self._faults = []
            self._tls_failures = []
            self._release.set()
            self._release = threading.Event()

    def down(self):
        """The server goes away: the listening socket is closed, so connections are refused,
        and open connections are cut, until up() (same port)."""
        port = self.port
        self.stop()
        self._bind = (self._bind[0], port)

    def up(self):
        """Back after down(), on the same port."""
        if self._server is None:
            self.start()
        return self

    @property
    def is_down(self):
        return self._server is None

    def stats(self):
        """{operation: count, ..., 'bytes_up': N, 'bytes_down': M} (body bytes)."""
        with self._lock:
            out = dict(self._counts)
            out["bytes_up"], out["bytes_down"] = self._bytes_up, self._bytes_down
        return out

    def requests(self):
        """Copy of the request log (RequestRecord), oldest first."""
        with self._lock:
            return list(self._log)

    def violations(self):
        with self._lock:
            return list(self._violations)

    def tls_failures(self):
        """Messages of the TLS handshakes that failed since reset() (TLS proxies)."""
        with self._lock:
            return list(self._tls_failures)

    def _tls_failed(self, err):
        with self._lock:
            self._tls_failures.append(str(err))

    def take_violations(self):
        """Return the violations recorded so far and forget them."""
        with self._lock:
            out, self._violations = self._violations, []
        return out

    # -- faults --
    def fault(self, kind, op=None, key=None, count=1, status=503, code=None,
              offset=None, seconds=0.0, before=False):
        """Arm a fault; returns it (its .hits counts injections).

        kind:  'error'      answer without forwarding: `status` with S3 error
                            `code` (default SlowDown for 503, InternalError for 500)
               'flip'       forward, then invert one byte of the response body
                            (at `offset`, default the middle) of a 200/206
                            response with a non-empty body; op defaults to GetObject
               'short'      forward, then answer a 200/206 with a non-empty body with
                            only its first half, framed as if that were all of it
                            (Content-Length says half; Content-Range, ETag and
                            the rest unchanged): a body shorter than the object
                            or range it claims to be, on a connection that stays
                            usable; op defaults to GetObject
               'disconnect' forward, then send the headers and half the body
                            and close the connection (no response at all if the
                            body is empty); with before=True the request is
                            dropped before it reaches the server
               'delay'      sleep `seconds` before forwarding
               'stall'      never answer (for `seconds`, default an hour, or until
                            clear_faults()/reset()), then drop the connection
        op:    S3 operation name (as in stats()); None matches any.
        key:   regular expression searched in the decoded object key.
        count: how many requests to hit; None for every matching one.
        The first armed fault that matches a request applies; reset() disarms.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        if kind in ("flip", "short") and op is None:
            op = "GetObject"
        f = Fault(kind=kind, op=op, key=re.compile(key) if key is not None else None,
                  count=count, status=status,
                  code=code or ERROR_CODES.get(status, "InternalError"),
                  offset=offset, seconds=seconds, before=before)
        with self._lock:
            self._faults.append(f)
        return f

    def faults(self):
        with self._lock:
            return list(self._faults)

    def clear_faults(self):
        with self._lock:
            self._faults = []
            self._release.set()
            self._release = threading.Event()

    def _take_fault(self, kinds, op, key, accept=lambda f: True):
        with self._lock:
            for f in self._faults:
                if f.kind in kinds and f.matches(op, key) and accept(f):
                    if f.count is not None:
                        f.count -= 1
                    f.hits += 1
                    return f
        return None

    # -- internals --
    def _track(self, conn, add):
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _violate(self, rec, kind, detail):
        v = Violation(kind, rec.op, rec.method, rec.target, detail)
        with self._lock:
            self._violations.append(v)
        if self.on_violation:
            self.on_violation(v)

    def _account(self, rec, up=0, down=0):
        with self._lock:
            rec.bytes_up += up
            rec.bytes_down += down
            self._bytes_up += up
            self._bytes_down += down

    def _handle(self, h):
        path, query = split_target(h.path)
        op = classify(h.command, path, query, h.headers)
        bucket, key = split_bucket_key(path)
        rec = RequestRecord(op, h.command, h.path, bucket, key, h.headers.get("Range"),
                            sni=getattr(h.connection, "bfs_sni", None),
                            host=h.headers.get("Host"))
        m = AUTH_RE.match((h.headers.get("Authorization") or "").strip())
        rec.access_key = m.group(1).split("/")[0] if m else None
        rec.session_token = h.headers.get("x-amz-security-token")
        with self._lock:
            self._counts[op] = self._counts.get(op, 0) + 1
            self._log.append(rec)
        request_id = uuid.uuid4().hex[:16].upper()
        body = None
        try:
            body, sha256_hex, md5_raw = self._read_body(h, rec)
            self._check_request(h, rec, path, query, sha256_hex, md5_raw)
            fault = self._take_fault(("error", "delay", "disconnect", "stall"), op, key,
                                     lambda f: f.kind != "disconnect" or f.before)
            if fault is not None:
                rec.fault = fault.kind
                if fault.kind == "error":
                    raise _Rejection(fault.status, fault.code, "injected fault")
                if fault.kind == "disconnect":
                    h.close_connection = True
                    return
                if fault.kind == "stall":
                    # no answer, until the client gives up (its connection closes) or
                    # the fault is cleared; then the connection is dropped unanswered
                    with self._lock:
                        release = self._release
                    release.wait(fault.seconds or 3600)
                    h.close_connection = True
                    return
                time.sleep(fault.seconds)
            self._forward(h, rec, body, key)
        except _Rejection as r:
            rec.status = r.status
            payload = b"" if h.command == "HEAD" else error_body(r.code, r.message, path, request_id)
            h.send_response_only(r.status)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(payload)))
            h.send_header("x-amz-request-id", request_id)
            if h.close_connection:
                h.send_header("Connection", "close")
            self._account(rec, down=len(payload))   # before the client can see it
            h.end_headers()
            h.wfile.write(payload)
        except (ConnectionError, socket.timeout, OSError):
            h.close_connection = True
        except Exception as e:            # a proxy bug must not pass unnoticed
            self._violate(rec, "proxy-error", f"{type(e).__name__}: {e}")
            h.close_connection = True
        finally:
            if body is not None:
                body.close()

    def _read_body(self, h, rec):
        """Read the whole request body, hashing it; returns (file, sha256 hex, md5 bytes)."""
        te = h.headers.get("Transfer-Encoding")
        if te:
            self._violate(rec, "unsupported", f"Transfer-Encoding: {te} (S3 needs Content-Length)")
            h.close_connection = True
            raise _Rejection(411 if rec.method == "PUT" else 501, "MissingContentLength"
                             if rec.method == "PUT" else "NotImplemented",
                             "chunked transfer encoding is not supported")
        try:
            remaining = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            h.close_connection = True
            raise _Rejection(400, "BadRequest", "invalid Content-Length")
        sha, md5 = hashlib.sha256(), hashlib.md5()
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)
        try:
            while remaining > 0:
                chunk = h.rfile.read(min(remaining, COPY_CHUNK))
                if not chunk:
                    raise ConnectionError("client closed the connection mid-body")
                sha.update(chunk)
                md5.update(chunk)
                spool.write(chunk)
                remaining -= len(chunk)
                self._account(rec, up=len(chunk))
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool, sha.hexdigest(), md5.digest()

    def _check_request(self, h, rec, path, query, body_sha256, body_md5):
        """Record every violation; raise _Rejection where real S3 refuses."""
        hdrs = h.headers
        strict = self.mode == "strict"
        rejection = None

        if strict and (canonical_path(path) != path or not wire_query_is_canonical(query)):
            self._violate(rec, "encoding", "path or query not canonically percent-encoded "
                          f"(expected {canonical_path(path)}?{canonical_query(query)})")
        copy_source = hdrs.get("x-amz-copy-source")
        if strict and copy_source is not None and canonical_path(copy_source) != copy_source:
            self._violate(rec, "encoding", f"x-amz-copy-source {copy_source!r} not canonically "
                          f"percent-encoded (expected {canonical_path(copy_source)!r})")

        # Body integrity.
        declared = hdrs.get("x-amz-content-sha256")
        if declared is None:
            self._violate(rec, "content-sha256", "no x-amz-content-sha256 header")
        elif declared == UNSIGNED_PAYLOAD:
            if strict:
                self._violate(rec, "content-sha256", "UNSIGNED-PAYLOAD in strict mode")
        elif declared.startswith("STREAMING-"):
            self._violate(rec, "unsupported", f"streaming payload signature {declared}")
        elif declared.lower() != body_sha256:
            self._violate(rec, "content-sha256",
                          f"header {declared} but body hashes to {body_sha256}")
            rejection = _Rejection(400, "XAmzContentSHA256Mismatch",
                                   "The provided 'x-amz-content-sha256' header does not "
                                   "match what was computed.")
        md5_header = hdrs.get("Content-MD5")
        if md5_header is not None:
            try:
                sent = base64.b64decode(md5_header, validate=True)
            except (binascii.Error, ValueError):
                sent = None
            if sent is None or len(sent) != 16:
                self._violate(rec, "content-md5", f"malformed Content-MD5 {md5_header!r}")
                rejection = rejection or _Rejection(400, "InvalidDigest",
                                                    "The Content-MD5 you specified was invalid.")
            elif sent != body_md5:
                self._violate(rec, "content-md5", f"Content-MD5 {md5_header} but body MD5 is "
                              f"{base64.b64encode(body_md5).decode()}")
                rejection = rejection or _Rejection(400, "BadDigest",
                                                    "The Content-MD5 you specified did not "
                                                    "match what we received.")
        elif rec.op == "DeleteObjects":
            self._violate(rec, "content-md5-missing", "DeleteObjects without Content-MD5")
            rejection = rejection or _Rejection(400, "InvalidRequest",
                                                "Missing required header for this request: "
                                                "Content-MD5")
        elif strict and rec.op in ("PutObject", "UploadPart"):
            self._violate(rec, "content-md5-missing", f"{rec.op} without Content-MD5")

        auth_rejection = self._check_auth(h, rec, path, query, declared, body_sha256)
        rejection = auth_rejection or rejection
        if rejection is not None and self.reject:
            raise rejection

    def _check_auth(self, h, rec, path, query, declared_sha256, body_sha256):
        hdrs = h.headers
        auth = hdrs.get("Authorization")
        if auth is None:
            if "X-Amz-Signature" in query:
                self._violate(rec, "unsupported", "presigned (query-string) request")
            else:
                self._violate(rec, "auth-missing", "no Authorization header")
            return _Rejection(403, "AccessDenied", "Access Denied")
        m = AUTH_RE.match(auth.strip())
        if not m:
            self._violate(rec, "auth-malformed", f"not a SigV4 header: {auth.split(' ')[0]}")
            return _Rejection(400, "AuthorizationHeaderMalformed",
                              "The authorization header is malformed.")
        credential, signed, signature = m.groups()
        signed_names = signed.split(";")
        scope = credential.split("/")
        amz_date = hdrs.get("x-amz-date")
        if amz_date is None:
            self._violate(rec, "auth-malformed", "no X-Amz-Date header")
            return _Rejection(403, "AccessDenied", "AWS authentication requires a valid "
                              "Date or x-amz-date header")
        try:
            when = parse_amz_date(amz_date)
        except ValueError:
            self._violate(rec, "auth-malformed", f"bad X-Amz-Date {amz_date!r}")
            return _Rejection(403, "AccessDenied", "bad x-amz-date")
        if abs(datetime.datetime.now(datetime.timezone.utc) - when) > MAX_SKEW:
            self._violate(rec, "clock-skew", f"X-Amz-Date {amz_date} is off by more than 15 min")
            return _Rejection(403, "RequestTimeTooSkewed", "The difference between the "
                              "request time and the current time is too large.")
        if len(scope) != 5 or scope[4] != "aws4_request":
            self._violate(rec, "auth-malformed", f"bad credential scope {credential}")
            return _Rejection(400, "AuthorizationHeaderMalformed", "bad credential")
        access_key, day, region, service = scope[:4]
        secret = self.credentials.get(access_key)
        if secret is None:
            self._violate(rec, "credential", f"unknown access key {access_key}")
            return _Rejection(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided "
                              "does not exist in our records.")
        if access_key in self.session_tokens:
            token = hdrs.get("x-amz-security-token")
            valid = self.session_tokens[access_key]
            if not (valid(token) if callable(valid) else token in valid):
                # what S3 answers for a temporary key past its expiry (not a violation: a
                # client finds out this way that it must fetch new credentials)
                return _Rejection(400, "ExpiredToken", "The provided token has expired.")
        if day != amz_date[:8] or region != self.region or service != "s3":
            self._violate(rec, "credential", f"scope {day}/{region}/{service} does not match "
                          f"date {amz_date[:8]} / region {self.region} / service s3")
            return _Rejection(400, "AuthorizationHeaderMalformed", "The authorization header "
                              "is malformed; the region or date is wrong.")
        if signed_names != sorted(set(signed_names)) or any(n != n.lower() for n in signed_names):
            self._violate(rec, "auth-malformed", f"SignedHeaders not sorted lower-case: {signed}")
        missing = [n for n in ("host", "x-amz-content-sha256", "x-amz-date")
                   if n not in signed_names]
        missing += sorted({n.lower() for n in hdrs.keys()
                           if n.lower().startswith("x-amz-") and n.lower() not in signed_names})
        if missing:
            self._violate(rec, "unsigned-header", f"not signed: {', '.join(missing)}")
        absent = [n for n in signed_names if n not in {k.lower() for k in hdrs.keys()}]
        if absent:
            self._violate(rec, "auth-malformed", f"signed headers absent: {', '.join(absent)}")

        payload_hash = declared_sha256 if declared_sha256 is not None else body_sha256
        # S3 canonicalises the query from its decoded parameters, so the query
        # is canonicalised here too; the path is used exactly as received.
        expected, canonical = sigv4_expected(rec.method, path, canonical_query(query), hdrs,
                                             signed_names, secret, access_key, amz_date,
                                             region, payload_hash)
        if expected == signature.lower():
            return None
        self._violate(rec, "signature", f"signature {signature} != recomputed {expected}; "
                      f"canonical request:\n{canonical}")
        return _Rejection(403, "SignatureDoesNotMatch",
                          "The request signature we calculated does not match the signature "
                          "you provided. Check your key and signing method.")

    def _forward(self, h, rec, body, key):
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=300)
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as above
            conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for name, value in h.headers.items():
                if name.lower() in HOP_BY_HOP:
                    continue
                if name.lower() == "x-amz-copy-source" and self.s3rver_fixups:
                    value = s3rver_copy_source(value)
                if name.lower() == "authorization" and self.s3rver_fixups:
                    value = s3rver_authorization(value)
                conn.putheader(name, value)
            conn.putheader("Connection", "close")
            conn.endheaders()
            for chunk in iter(lambda: body.read(COPY_CHUNK), b""):
                conn.send(chunk)
            resp = conn.getresponse()
            self._relay(h, rec, resp, key)
        finally:
            conn.close()

    def _relay(self, h, rec, resp, key):
        rec.status = resp.status
        has_body = h.command != "HEAD" and resp.status not in (204, 304)
        length = resp.getheader("Content-Length")
        buffered = None
        if has_body and length is None:
            # Unframed or chunked upstream body (small XML in practice): read it
            # whole so that the client always gets a Content-Length.
            buffered = resp.read()
            length = len(buffered)
        length = int(length) if has_body else 0

        fault = self._take_fault(("disconnect",), rec.op, key, lambda f: not f.before)
        if fault is None and resp.status in (200, 206) and length > 0:
            fault = self._take_fault(("flip", "short"), rec.op, key,
                                     lambda f: f.offset is None or f.offset < length)
        if fault is not None:
            rec.fault = fault.kind
            if fault.kind == "disconnect" and length == 0:
                resp.read()                  # nothing to cut: lose the whole response
                h.close_connection = True
                return

        short = fault is not None and fault.kind == "short"
        h.send_response_only(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP and not (
                    (buffered is not None or short) and name.lower() == "content-length"):
                h.send_header(name, value)
        if short:
            length //= 2                     # the upstream connection is closed after
            h.send_header("Content-Length", str(length))
        elif buffered is not None:
            h.send_header("Content-Length", str(length))
        if h.close_connection:
            h.send_header("Connection", "close")
        h.end_headers()
        if not has_body:
            resp.read()
            return

        stop_at = length // 2 if fault is not None and fault.kind == "disconnect" else None
        flip_at = None
        if fault is not None and fault.kind == "flip":
            flip_at = fault.offset if fault.offset is not None else length // 2
        sent = 0
        while sent < length:
            if buffered is not None:
                chunk = buffered[sent:sent + COPY_CHUNK]
            else:
                chunk = resp.read(min(COPY_CHUNK, length - sent))
            if not chunk:
                raise ConnectionError("upstream closed the connection mid-body")
            if flip_at is not None and sent <= flip_at < sent + len(chunk):
                i = flip_at - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
            if stop_at is not None and sent + len(chunk) >= stop_at:
                self._write(h, rec, chunk[:stop_at - sent])
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            self._write(h, rec, chunk)
            sent += len(chunk)

    def _write(self, h, rec, data):
        if data:
            self._account(rec, down=len(data))     # before the client can see it
            h.wfile.write(data)


def main():
    import argparse
    ap = argparse.ArgumentParser(description="Auditing S3 reverse proxy (see docstring).")
    ap.add_argument("--upstream", required=True, help="S3 server URL, e.g. http://127.0.0.1:4568")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("strict", "peer"), default="strict")
    ap.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="and this private key (PEM)")
    args = ap.parse_args()
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    proxy = AuditProxy(args.upstream, mode=args.mode, port=args.port, tls=tls,
                       on_violation=lambda v: print(v, flush=True)).start()
    print(f"audit proxy {args.mode} on {proxy.endpoint} -> {args.upstream}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        print(proxy.stats())
        proxy.stop()


if __name__ == "__main__":
    main()
