"""Fixtures for the bucketfs integration tests (run: bash tests/run-integration.sh).

Every test runs against a real S3 server (s3rver 3.7.1 from tests/s3server,
installed by `npm ci`) through the auditing proxy tests/proxy/audit_proxy.py,
which re-verifies every request bucketfs sends (SigV4 signature, payload
SHA-256, Content-MD5, canonical encoding) and counts requests by operation.

The server is picked by S3_SERVER: "s3rver" (default) or "rgw", a one-node Ceph
RADOS Gateway (tests/s3server/rgw.py: Debian's ceph-mon, ceph-osd, radosgw) that
checks signatures and Content-MD5 itself and keeps S3's multipart ETags. `make
test` runs the whole suite once on each.

Fixtures
--------
s3server  (session) the S3 server on a free 127.0.0.1 port, temp data dir.
          .endpoint -> "http://127.0.0.1:PORT" (direct, unaudited), .log (path),
          .kind -> "s3rver" or "rgw", .data_dir (s3rver only, else None),
          .add_key(access_key, secret_key, uid=None): another key pair on RGW, for
          the tests' user or (uid) a new user, a second account (s3rver checks no
          keys: there only the proxy's credentials matter)
on_rgw / on_s3rver  booleans: which server this session runs against
          (S3_SERVER); tests of server behaviour only one of them has use them.
proxy     (session) strict audit proxy in front of s3server (what `mount` uses).
          .endpoint; .stats() -> {"GetObject": n, ..., "bytes_up": n,
          "bytes_down": n} (body bytes); .requests() -> [RequestRecord(op,
          method, target, bucket, key, range, status, bytes_up, bytes_down,
          fault)]; .violations() -> [Violation(kind, op, method, target,
          detail)]; .take_violations() (returns and clears: use it in tests
          that provoke violations on purpose); .reset();
          .fault(kind, op=None, key=None, count=1, status=503, code=None,
                 offset=None, seconds=0, before=False)
              kind "error": answer `count` matching requests with `status`
                (503 SlowDown, 500 InternalError, ...) without forwarding;
              "flip": invert one byte (at `offset`, default the middle) of a
                GetObject response body; "disconnect": forward, then send the
                headers and half the body and close the connection (before=True:
                drop the request unforwarded); "delay": sleep `seconds` first;
              "stall": never answer (until `seconds`, default 3600, or
                clear_faults()), then drop the connection.
              op: operation name as in stats(); key: regex searched in the key;
              count=None: every matching request. Returns the Fault (.hits).
          Operation names: ListBuckets, HeadBucket, CreateBucket, DeleteBucket,
          ListObjects, ListObjectsV2, GetObject, HeadObject, PutObject,
          CopyObject, DeleteObject, DeleteObjects, CreateMultipartUpload,
          UploadPart, UploadPartCopy, CompleteMultipartUpload,
          AbortMultipartUpload, ListParts, ListMultipartUploads, ...
          .down() / .up(): the server goes away (connections refused, open ones
          cut) and comes back on the same port; the next test finds it up.
peer_proxy (session) the same in "peer" mode, used by peer_mount (s3fs).
start_proxy(s3server, mode="strict", tls=None) / stop_proxy(p): another proxy,
          audited and reset like these; tls=(certfile, keyfile) serves HTTPS
          (endpoint https://localhost:PORT; see test_tls.py).
(autouse) Before each test every started proxy is reset (counters, log,
          violations, faults); after it (at teardown, after the mounts are
          unmounted, so final uploads are audited too) the test errors if any
          proxy recorded a violation.
s3        boto3 client DIRECT to s3server (not audited, not counted):
          path-style, S3RVER/S3RVER, us-east-1. Use it to set up and check.
bucket    a fresh, uniquely named bucket (created through s3); returns its name.
mount     factory: m = mount(bucket, prefix=None, opts=[], env=None, check=True,
          daemon=False) runs
            bin/bucketfs BUCKET[:PREFIX] MNT [-f] -o endpoint=<proxy>,path_style,
                region=us-east-1,cache_dir=<tmp>,<opts>
          with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY=S3RVER and
          AWS_EC2_METADATA_DISABLED=true in the environment (other AWS_*
          variables removed, HOME a fresh temp dir; `env` adds
          variables, a None value removes one). Later -o options override
          earlier ones. Default: foreground (-f) subprocess, stdout+stderr to
          m.log, returns when MNT is a live mount. daemon=True: the normal
          daemonizing path; the command must exit 0 with the mount live.
          Returns a Mount:
            .path         the mountpoint          .cache_dir   the cache dir
            .log          log file (all starts)   .log_text()  its content
            .pid          daemon pid              .returncode  exit status
                          (foreground: after it exited; daemon mode: the
                          status of the command that daemonized)
            .unmount(check=True)  fusermount3 -u, then waits until the daemon
                          exited (all data is in S3 then); check: exit status 0
            .remount()    unmounts if needed, mounts again with the same args
                          and cache_dir; returns the Mount
            .kill9()      SIGKILL the daemon, wait for it, clear the dead mount
          check=False: returns subprocess.CompletedProcess(args, returncode,
          stdout=log text, stderr=log text) instead of asserting; returncode 0
          means it mounted (the mount is still cleaned up at teardown).
          A foreground daemon that exits before mounting gives its exit status.
peer_mount  factory, same signature and Mount object, but mounts with s3fs 1.90
          (s3fs BUCKET[:/PREFIX] MNT -f -o url=<peer_proxy>,use_path_request_style,
          passwd_file=<0600 file>,endpoint=us-east-1,dbglevel=warn,<opts>).
          s3fs 1.90 signs payloads (no UNSIGNED-PAYLOAD) and sends no
          Content-MD5; it leaves '/' unencoded in query strings.
test_dir  a fresh temp dir for the test (removed after it).
bfs_bin() path of bin/bucketfs; fails the test ("run make first") if missing.
make_client(endpoint, access_key="S3RVER", secret_key="S3RVER", retries=0)
          a boto3 client for any endpoint, e.g. make_client(proxy.endpoint) to
          send audited requests. (Both importable: from conftest import ...)

Teardown always unmounts (fusermount3 -u, then -uz), kills leftover daemons
and removes the test's temp dirs (under one session dir in $TMPDIR, removed at
the end of the session). Each test's mount logs are printed at teardown, so
pytest shows them for failing tests.

BFS_KEEP_TMP=1 keeps the session dir (s3rver.log, s3rver data, mount logs and
caches) for debugging; its path is printed at the end.

Per-test timeout: BFS_TEST_TIMEOUT seconds (default 300), through
pytest-timeout when installed, else a SIGALRM fallback here; a test may set
its own with @pytest.mark.timeout(N).

s3rver 3.7.1 runs with NODE_OPTIONS=--openssl-legacy-provider: without it,
ListObjectsV2 pagination fails with 500 (continuation tokens use DES).
s3rver 3.7.1 limitations (not bucketfs bugs): it does not check SigV4
signatures (the proxy does); it has no AbortMultipartUpload, ListParts,
ListMultipartUploads or UploadPartCopy (405/501); keys containing "//" are not
routed (404); it decodes x-amz-copy-source with decodeURI, which the proxy
compensates for when forwarding (so CopyObject works for keys with '+', '&' ...).
"""

import faulthandler
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "proxy"))
from audit_proxy import AuditProxy  # noqa: E402
sys.path.insert(0, str(REPO / "tests" / "s3server"))
import rgw  # noqa: E402

# make test-asan points this at the sanitizer build's binaries
BIN_DIR = Path(os.environ.get("BUCKETFS_BIN") or REPO / "bin")
BFS_BIN = BIN_DIR / "bucketfs"
S3RVER_BIN = REPO / "tests" / "s3server" / "node_modules" / ".bin" / "s3rver"
S3_SERVER = os.environ.get("S3_SERVER", "s3rver")
if S3_SERVER not in ("s3rver", "rgw"):
    raise SystemExit(f"S3_SERVER={S3_SERVER!r}: use s3rver or rgw")
on_rgw = S3_SERVER == "rgw"
on_s3rver = S3_SERVER == "s3rver"
ACCESS_KEY = SECRET_KEY = "S3RVER"
REGION = "us-east-1"
MOUNT_TIMEOUT = 30        # seconds for a mount to come up
EXIT_TIMEOUT = 60         # seconds for a daemon to exit after unmount
DEFAULT_TIMEOUT = int(os.environ.get("BFS_TEST_TIMEOUT", "300"))

_PROXIES = []             # every AuditProxy started this session


# ---------------------------------------------------------------- timeouts --

def pytest_configure(config):
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line("markers", "timeout(seconds): per-test time limit "
                                "(conftest fallback; pytest-timeout is not installed)")


def pytest_collection_modifyitems(config, items):
    have_plugin = config.pluginmanager.hasplugin("timeout")
    if have_plugin and config.getoption("timeout", None) is not None:
        return                                  # --timeout given: it applies
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


def _alarm_phase(item):
    """Fallback for a missing pytest-timeout: SIGALRM fails the running phase."""
    if item.config.pluginmanager.hasplugin("timeout"):
        return None
    marker = item.get_closest_marker("timeout")
    seconds = marker.args[0] if marker and marker.args else DEFAULT_TIMEOUT

    def expired(signum, frame):
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        pytest.fail(f"Timeout: test phase exceeded {seconds}s", pytrace=False)
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return old


def _alarm_done(old):
    if old is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    old = _alarm_phase(item)
    yield
    _alarm_done(old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    old = _alarm_phase(item)
    yield
    _alarm_done(old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    old = _alarm_phase(item)
    yield
    _alarm_done(old)


# ---------------------------------------------------------------- helpers ---

def bfs_bin():
    """Path of bin/bucketfs; fails the calling test if it has not been built."""
    if not (BFS_BIN.is_file() and os.access(BFS_BIN, os.X_OK)):
        pytest.fail(f"{BFS_BIN} not found: run make first", pytrace=False)
    return str(BFS_BIN)


def _mount_points():
    """Mount points from /proc/self/mountinfo (never touches the mounts)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            raw = line.split()[4]
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw))
    return points


def is_mounted(path):
    return os.path.realpath(path) in _mount_points()


def _fusermount(path, lazy=False):
    return subprocess.run(["fusermount3", "-uz" if lazy else "-u", path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _alive(pid):
    """True if pid runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _pids_serving(mountpoint, program):
    """Pids of processes named `program` with `mountpoint` in their argv."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).decode(errors="replace") == program \
                and os.fsencode(mountpoint) in argv and _alive(int(entry)):
            found.append(int(entry))
    return found


def daemon_pids(mountpoint):
    """Pids of bucketfs daemons serving mountpoint (for tests that start bin/bucketfs
    themselves)."""
    return _pids_serving(mountpoint, "bucketfs")


def _wait(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _start_s3rver(data_dir, log_path):
    """Start s3rver on port 0 and read the port it reports; returns (proc, port)."""
    # s3rver encrypts ListObjectsV2 continuation tokens with DES, which
    # OpenSSL 3 only offers through its legacy provider.
    env = dict(os.environ, NODE_OPTIONS=(os.environ.get("NODE_OPTIONS", "") +
                                         " --openssl-legacy-provider").strip())
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(S3RVER_BIN), "-d", str(data_dir), "-a", "127.0.0.1",
                             "-p", "0"], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    port = None

    def listening():
        nonlocal port
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", Path(log_path).read_bytes())
        if m:
            port = int(m.group(1))
        return port is not None or proc.poll() is not None
    _wait(listening, 30)
    if port is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"s3rver did not start:\n{Path(log_path).read_text(errors='replace')}")
    return proc, port


# ---------------------------------------------------------------- session ---

@pytest.fixture(scope="session")
def _session_dir():
    root = Path(tempfile.mkdtemp(prefix="bucketfs-it-"))
    yield root
    for point in _mount_points():          # never delete through a live mount
        if point == str(root) or point.startswith(str(root) + "/"):
            if _fusermount(point).returncode != 0:
                _fusermount(point, lazy=True)
    if os.environ.get("BFS_KEEP_TMP"):
        print(f"\nBFS_KEEP_TMP: kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


class S3Server:
    def __init__(self, kind, port, data_dir, log, rgw_server=None):
        self.kind, self.port, self.data_dir, self.log = kind, port, data_dir, log
        self.endpoint = f"http://127.0.0.1:{port}"
        self._rgw = rgw_server

    def add_key(self, access_key, secret_key, uid=None):
        if self._rgw is not None:
            self._rgw.add_key(access_key, secret_key, uid)


@pytest.fixture(scope="session")
def s3server(_session_dir):
    if on_rgw:
        yield from _rgw_server(_session_dir)
    else:
        yield from _s3rver_server(_session_dir)


def _rgw_server(session_dir):
    missing = [p for p in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin")
               if not shutil.which(p)]
    if missing:
        pytest.fail(f"S3_SERVER=rgw needs {', '.join(missing)}: run `make deps`", pytrace=False)
    server = rgw.RGW(session_dir / "rgw")
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(f"Ceph RGW did not start: {e}", pytrace=False)
    yield S3Server("rgw", server.port, None, server.log, server)
    server.stop()


def _s3rver_server(_session_dir):
    if not os.access(S3RVER_BIN, os.X_OK):
        pytest.fail(f"{S3RVER_BIN} missing: run `make deps` (npm ci in tests/s3server)",
                    pytrace=False)
    data = _session_dir / "s3rver-data"
    data.mkdir()
    proc, port = _start_s3rver(data, _session_dir / "s3rver.log")
    server = S3Server("s3rver", port, data, _session_dir / "s3rver.log")

    if not _wait(lambda: rgw.answers_http(server.endpoint), 30, 0.1):
        proc.kill()
        pytest.fail("s3rver does not answer HTTP")
    yield server
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_proxy(s3server, mode="strict", tls=None):
    """An AuditProxy in front of s3server, reset and audited around every test like the
    proxy fixture; tls=(certfile, keyfile) serves HTTPS. Stop it with stop_proxy()."""
    p = AuditProxy(s3server.endpoint, mode=mode, credentials={ACCESS_KEY: SECRET_KEY},
                   region=REGION, s3rver_fixups=s3server.kind == "s3rver", tls=tls).start()
    _PROXIES.append(p)
    return p


def stop_proxy(p):
    _PROXIES.remove(p)
    p.stop()



@pytest.fixture(scope="session")
def proxy(s3server):
    p = start_proxy(s3server, "strict")
    yield p
    stop_proxy(p)


@pytest.fixture(scope="session")
def peer_proxy(s3server):
    p = start_proxy(s3server, "peer")
    yield p
    stop_proxy(p)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "_bfs_report_" + report.when, report)


@pytest.fixture(autouse=True)
def _audit(request):
    """Reset the proxies before each test; error at teardown on any violation.

    When the test failed, the proxies' request logs are printed (pytest shows
    them with the failure)."""
    for p in _PROXIES:
        p.up()
        p.reset()
    yield
    report = getattr(getattr(request, "node", None), "_bfs_report_call", None)
    if report is not None and report.failed:
        for p in list(_PROXIES):
            log = p.requests()
            print(f"----- {p.mode} proxy: {len(log)} requests (last 300) -----")
            for r in log[-300:]:
                print(f"{r.status} {r.op} {r.method} {r.target}"
                      + (f" range={r.range}" if r.range else "")
                      + f" up={r.bytes_up} down={r.bytes_down}"
                      + (f" fault={r.fault}" if r.fault else ""))
    found = [f"{p.mode} proxy: {v}" for p in list(_PROXIES) for v in p.take_violations()]
    if found:
        pytest.fail("audit proxy recorded %d violation(s):\n%s" % (len(found), "\n".join(found)),
                    pytrace=False)


def make_client(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, retries=0):
    """boto3 S3 client for `endpoint`: path-style, us-east-1, `retries` retries."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name=REGION,
        config=Config(s3={"addressing_style": "path"},
                      retries={"total_max_attempts": retries + 1, "mode": "standard"}))


@pytest.fixture(scope="session")
def s3(s3server):
    return make_client(s3server.endpoint, retries=2)


_DONE_BUCKETS = []   # RGW: buckets of earlier tests, emptied before the next test starts


def _purge(s3, name):
    """Deletes every object, unfinished upload and then the bucket (best effort)."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                s3.delete_objects(Bucket=name, Delete={"Objects": keys[i:i + 1000],
                                                       "Quiet": True})
        for u in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
        s3.delete_bucket(Bucket=name)
    except Exception as e:          # noqa: BLE001 - never fail a later test for this
        print(f"could not empty bucket {name}: {e}")


@pytest.fixture
def bucket(s3):
    # RGW's OSD keeps objects in memory (memstore): the data of finished tests goes, so a
    # whole suite fits. (At this point their mounts are gone; s3rver keeps files on disk.)
    while on_rgw and _DONE_BUCKETS:
        _purge(s3, _DONE_BUCKETS.pop())
    name = f"bfs-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    if on_rgw:
        _DONE_BUCKETS.append(name)
    return name


@pytest.fixture
def test_dir(_session_dir, request):
    """A fresh temp dir for this test (removed after it unless BFS_KEEP_TMP is set)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:48]
    d = Path(tempfile.mkdtemp(prefix=stem + "-", dir=_session_dir))
    yield d
    if not os.environ.get("BFS_KEEP_TMP") and \
            not any(p.startswith(str(d) + "/") for p in _mount_points()):
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- mounts ----

class Mount:
    """A mounted filesystem driven by the mount/peer_mount fixtures."""

    def __init__(self, workdir, program, argv_for, env, daemon):
        self.workdir = workdir
        self.path = str(workdir / "mnt")
        self.cache_dir = str(workdir / "cache")
        self.log = str(workdir / "log.txt")
        self.home = str(workdir / "home")
        for d in (self.path, self.cache_dir, self.home):
            os.makedirs(d)
        self.program = program            # process name, to find the daemon
        self._argv_for = argv_for         # daemon flag -> argv
        self.env = dict(env, HOME=self.home)
        self.daemon = daemon
        self.proc = None
        self.pid = None
        self.returncode = None
        self.starts = 0

    def log_text(self):
        return Path(self.log).read_text(errors="replace")

    def _start(self, check):
        argv = self._argv_for(self.daemon)
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"=== start {self.starts}: {' '.join(argv)}\n".encode())
            offset = log.tell()
        self.returncode = None
        log = open(self.log, "ab")
        try:
            if self.daemon:
                try:
                    res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env,
                                         timeout=MOUNT_TIMEOUT, start_new_session=True)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"{argv[0]} did not return within {MOUNT_TIMEOUT}s:\n"
                                f"{self.log_text()}", pytrace=False)
                self.returncode = res.returncode
                up = res.returncode == 0 and is_mounted(self.path)
                if up:
                    pids = _pids_serving(self.path, self.program)
                    self.pid = pids[0] if pids else None
            else:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=self.env,
                                             start_new_session=True)
                self.pid = self.proc.pid
                _wait(lambda: is_mounted(self.path) or self.proc.poll() is not None,
                      MOUNT_TIMEOUT)
                up = is_mounted(self.path)
                if not up and self.proc.poll() is None:
                    self._kill()
                    pytest.fail(f"{argv[0]} neither mounted nor exited within "
                                f"{MOUNT_TIMEOUT}s:\n{self.log_text()}", pytrace=False)
                self.returncode = 0 if up else self.proc.returncode
        finally:
            log.close()
        output = Path(self.log).read_bytes()[offset:].decode(errors="replace")
        if not check:
            return subprocess.CompletedProcess(argv, self.returncode, output, output)
        if not up:
            pytest.fail(f"mount failed (exit status {self.returncode}):\n{output}",
                        pytrace=False)
        assert os.path.ismount(self.path), f"{self.path} listed as mounted but not a mount"
        if self.daemon:
            assert self.pid is not None, f"no {self.program} process serves {self.path}"
        return self

    def _wait_exit(self, timeout):
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
                self.returncode = self.proc.returncode
                return True
            except subprocess.TimeoutExpired:
                return False
        if self.pid is not None:
            return _wait(lambda: not _alive(self.pid), timeout)
        return True

    def _kill(self):
        pids = set(_pids_serving(self.path, self.program))
        if self.proc is not None and self.proc.poll() is None:
            pids.add(self.proc.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait()
            self.returncode = self.proc.returncode
        for pid in pids:
            _wait(lambda: not _alive(pid), 10)

    def unmount(self, check=True):
        """fusermount3 -u, then wait until the daemon has exited (all data is in S3)."""
        deadline = time.monotonic() + 10
        while is_mounted(self.path):
            res = _fusermount(self.path)
            if res.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"fusermount3 -u {self.path} failed: {res.stdout}")
            time.sleep(0.2)
        if not self._wait_exit(EXIT_TIMEOUT):
            self._kill()
            raise AssertionError(f"{self.program} did not exit within {EXIT_TIMEOUT}s of "
                                 f"unmount; killed. Log:\n{self.log_text()}")
        if check and self.returncode not in (0, None):
            raise AssertionError(f"{self.program} exited with status {self.returncode} "
                                 f"after unmount. Log:\n{self.log_text()}")
        return self.returncode

    def remount(self):
        """Mount again with the same arguments and cache dir (unmounting first)."""
        if is_mounted(self.path):
            self.unmount()
        self.proc = self.pid = None
        return self._start(check=True)

    def kill9(self):
        """SIGKILL the daemon, wait for it, and clear the dead mount."""
        assert self.pid is not None and _alive(self.pid), "no live daemon to kill"
        os.kill(self.pid, signal.SIGKILL)
        if not self._wait_exit(10):
            raise AssertionError(f"pid {self.pid} survived SIGKILL")
        if is_mounted(self.path) and _fusermount(self.path).returncode != 0:
            _fusermount(self.path, lazy=True)

    def _cleanup(self):
        """Teardown: unmount whatever is left and kill leftovers; returns problems."""
        problems = []
        if is_mounted(self.path):
            if _fusermount(self.path).returncode != 0:
                problems.append(f"{self.path}: fusermount3 -u failed, used -uz")
                _fusermount(self.path, lazy=True)
        if not self._wait_exit(EXIT_TIMEOUT):
            problems.append(f"{self.program} for {self.path} did not exit after unmount")
        if _pids_serving(self.path, self.program) or (
                self.proc is not None and self.proc.poll() is None):
            problems.append(f"killed leftover {self.program} for {self.path}")
            self._kill()
        return problems


class _MountFactory:
    def __init__(self, test_dir, program, build_argv, base_env):
        self.test_dir, self.program = test_dir, program
        self.build_argv, self.base_env = build_argv, base_env
        self.mounts = []

    def __call__(self, bucket, prefix=None, opts=(), env=None, check=True, daemon=False):
        workdir = Path(tempfile.mkdtemp(prefix="mount-", dir=self.test_dir))
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        full_env.update(self.base_env)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        m = Mount(workdir, self.program, None, full_env, daemon)
        m._argv_for = lambda daemon_mode: self.build_argv(m, bucket, prefix, list(opts),
                                                           daemon_mode)
        self.mounts.append(m)
        return m._start(check)

    def teardown(self):
        problems = []
        for m in reversed(self.mounts):
            problems += m._cleanup()
            text = m.log_text() if os.path.exists(m.log) else ""
            tail = "\n".join(text.splitlines()[-200:])
            print(f"----- {m.program} log {m.log} (last 200 lines) -----\n{tail}")
        if problems:
            pytest.fail("mount teardown: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def mount(proxy, test_dir):
    def argv(m, bucket, prefix, opts, daemon):
        spec = f"{bucket}:{prefix}" if prefix else bucket
        o = [f"endpoint={proxy.endpoint}", "path_style", f"region={REGION}",
             f"cache_dir={m.cache_dir}"] + opts
        return [bfs_bin(), spec, m.path] + ([] if daemon else ["-f"]) + ["-o", ",".join(o)]
    factory = _MountFactory(test_dir, "bucketfs", argv,
                            {"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                             "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                             # without keys, never ask the real 169.254.169.254
                             "AWS_EC2_METADATA_DISABLED": "true"})
    yield factory
    factory.teardown()


@pytest.fixture
def peer_mount(peer_proxy, test_dir):
    passwd = test_dir / "passwd-s3fs"
    passwd.write_text(f"{ACCESS_KEY}:{SECRET_KEY}\n")
    passwd.chmod(0o600)

    def argv(m, bucket, prefix, opts, daemon):
        spec = f"{bucket}:/{prefix.strip('/')}" if prefix else bucket
        o = [f"url={peer_proxy.endpoint}", "use_path_request_style", f"passwd_file={passwd}",
             f"endpoint={REGION}", "dbglevel=warn"] + opts
        return ["s3fs", spec, m.path] + ([] if daemon else ["-f"]) + ["-o", ",".join(o)]
    factory = _MountFactory(test_dir, "s3fs", argv, {})
    yield factory
    factory.teardown()
