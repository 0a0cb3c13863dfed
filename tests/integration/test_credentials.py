"""Where bucketfs finds its credentials and configuration, the way the AWS CLI does.

Each test runs bin/bucketfs itself (daemonizing, as a user would) with a clean environment: no
AWS_* variables, HOME an empty directory with the test's ~/.aws files, and only the -o options
the test gives, so that endpoint, region and keys can come from the files. Every request goes
through the audit proxy, which recomputes each signature with the secret of the access key it
names and records which access key and session token signed it; a test checks those as well
as the data (through boto3, directly against the server).

A "second account" is a second key pair: the proxy learns it (proxy.credentials) and, on RGW,
it is a second user (radosgw-admin user create), with its own bucket. Temporary credentials are
an extra key pair of the tests' user whose session tokens the proxy checks
(proxy.session_tokens): a token past its expiry gets S3's 400 ExpiredToken."""
import http.server
import json
import os
import re
import shlex
import socket
import subprocess
import threading
import time
import uuid

import botocore.exceptions
import pytest

from conftest import ACCESS_KEY, SECRET_KEY, bfs_bin, daemon_pids, make_client, on_rgw
from helpers import is_mounted, s3_body, wait_until, write_file

SECOND_KEY, SECOND_SECRET = 'BFSSECONDACCOUNT0001', 'second/Account+Secret'
TEMP_KEY, TEMP_SECRET = 'BFSTEMPORARYKEY00001', 'temporary/Secret+Key'


class Runner:
    """bin/bucketfs with a clean environment (HOME = self.home, no AWS_* variables)."""

    def __init__(self, proxy, tmp):
        self.proxy, self.tmp = proxy, tmp
        self.home = tmp / 'home'
        (self.home / '.aws').mkdir(parents=True)
        self.mounted = []
        self.procs = {}     # foreground mounts: mountpoint -> Popen

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
        env['HOME'] = str(self.home)
        env['AWS_EC2_METADATA_DISABLED'] = 'true'   # never the real 169.254.169.254
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def write(self, name, text, mode=0o600):
        p = self.home / '.aws' / name
        write_file(p, text.encode())
        os.chmod(p, mode)
        return str(p)

    def run(self, bucket, opts=(), env=None, endpoint=True, foreground=False):
        """Mounts bucket; returns (mountpoint, CompletedProcess). endpoint: add
        endpoint=<proxy>,path_style,region=us-east-1 to the options. foreground: -f, its
        output in r.log (a path), returning once mounted (r.returncode 0) or exited."""
        mnt = str(self.tmp / f'mnt{len(self.mounted)}')
        os.mkdir(mnt)
        o = [f'cache_dir={self.tmp / f"cache{len(self.mounted)}"}']
        if endpoint:
            o += [f'endpoint={self.proxy.endpoint}', 'path_style', 'region=us-east-1']
        self.mounted.append(mnt)
        argv = [bfs_bin(), bucket, mnt, '-o', ','.join(o + list(opts))]
        t0 = time.monotonic()
        if foreground:
            log = str(self.tmp / f'log{len(self.mounted)}.txt')
            with open(log, 'wb') as f:
                p = subprocess.Popen(argv + ['-f'], env=env or self.env(), stdout=f,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self.procs[mnt] = p
            wait_until(lambda: is_mounted(mnt) or p.poll() is not None, 30)
            r = subprocess.CompletedProcess(argv, 0 if is_mounted(mnt) else p.poll(),
                                            '', open(log).read())
            r.log = log
        else:
            r = subprocess.run(argv, env=env or self.env(), capture_output=True, text=True,
                               timeout=90)
        r.seconds = time.monotonic() - t0
        return mnt, r

    def unmount(self, mnt):
        pids = daemon_pids(mnt)
        subprocess.run(['fusermount3', '-u', mnt], check=True)
        if mnt in self.procs:
            assert self.procs[mnt].wait(60) == 0, 'bucketfs -f exited != 0 after unmount'
        assert wait_until(lambda: not any(os.path.exists(f'/proc/{p}') for p in pids), 60), \
            'daemon still running 60 s after fusermount3 -u'

    def cleanup(self):
        for mnt in self.mounted:
            if is_mounted(mnt):
                subprocess.run(['fusermount3', '-u', mnt])
                wait_until(lambda: not daemon_pids(mnt), 30)
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def runner(proxy, tmp_path):
    r = Runner(proxy, tmp_path)
    yield r
    r.cleanup()


@pytest.fixture
def second_account(s3server, proxy, s3):
    """A second account: (access key, secret, boto3 client for it, a bucket it owns). On
    s3rver, which has one account, the proxy is what tells the keys apart, and the client is
    S3RVER's."""
    s3server.add_key(SECOND_KEY, SECOND_SECRET, uid='bfs-second')
    proxy.credentials[SECOND_KEY] = SECOND_SECRET
    client = make_client(s3server.endpoint, SECOND_KEY, SECOND_SECRET, retries=2) \
        if on_rgw else s3
    name = f'bfs2-{uuid.uuid4().hex[:16]}'
    client.create_bucket(Bucket=name)
    yield SECOND_KEY, SECOND_SECRET, client, name
    for page in client.get_paginator('list_objects_v2').paginate(Bucket=name):
        for o in page.get('Contents', []):
            client.delete_object(Bucket=name, Key=o['Key'])
    client.delete_bucket(Bucket=name)
    proxy.credentials.pop(SECOND_KEY, None)


@pytest.fixture
def temp_key(s3server, proxy):
    """A key pair of the tests' account whose session tokens ("tok-N-EXPIRY") the proxy takes
    only until EXPIRY (unix seconds); later, S3's 400 ExpiredToken."""
    s3server.add_key(TEMP_KEY, TEMP_SECRET)
    proxy.credentials[TEMP_KEY] = TEMP_SECRET

    def valid(token):
        m = re.fullmatch(r'tok-(\d+)-(\d+)', token or '')
        return m is not None and time.time() < int(m.group(2))
    proxy.session_tokens[TEMP_KEY] = valid
    yield TEMP_KEY
    proxy.session_tokens.pop(TEMP_KEY, None)
    proxy.credentials.pop(TEMP_KEY, None)


def assert_mounted(r, mnt):
    assert r.returncode == 0, f'mount failed ({r.returncode}): {r.stderr!r}'
    assert wait_until(lambda: is_mounted(mnt), 10), f'{mnt} not mounted after bucketfs exited 0'


def assert_clean_failure(r, mnt, *wanted):
    """exit != 0, one stderr line containing every string in wanted, nothing mounted."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0, f'exit status 0 for a failing mount; stderr: {r.stderr!r}'
    assert len(lines) == 1, f'expected one line on stderr, got {len(lines)}: {r.stderr!r}'
    for w in wanted:
        assert w in lines[0], f'stderr line {lines[0]!r} does not mention {w!r}'
    assert not is_mounted(mnt), f'{mnt} is still mounted after a failed start'
    assert wait_until(lambda: not daemon_pids(mnt), 5), f'bucketfs left running for {mnt}'


def signed_by(proxy, bucket=None):
    """The set of access keys that signed the requests the proxy saw (for bucket)."""
    return {r.access_key for r in proxy.requests() if bucket is None or r.bucket == bucket}


def write_and_check(runner, s3, bucket, mnt, name, data=None):
    """A file written through the mount is in S3 once close() returns (close-to-open)."""
    data = data or f'{name} written through the mount'.encode()
    write_file(os.path.join(mnt, name), data)
    assert s3_body(s3, bucket, name) == data
    with open(os.path.join(mnt, name), 'rb') as f:
        assert f.read() == data


# ---- static keys ----------------------------------------------------------------------------

def test_environment_keys(runner, proxy, s3, bucket):
    mnt, r = runner.run(bucket, env=runner.env(AWS_ACCESS_KEY_ID=ACCESS_KEY,
                                               AWS_SECRET_ACCESS_KEY=SECRET_KEY))
    assert_mounted(r, mnt)
    write_and_check(runner, s3, bucket, mnt, 'via-env')
    runner.unmount(mnt)
    assert signed_by(proxy) == {ACCESS_KEY}


def test_credentials_file(runner, proxy, second_account):
    key, secret, client, bucket = second_account
    runner.write('credentials', f'[default]\naws_access_key_id = {key}\n'
                 f'aws_secret_access_key = {secret}\n')
    mnt, r = runner.run(bucket)
    assert_mounted(r, mnt)
    write_and_check(runner, client, bucket, mnt, 'via-credentials-file')
    runner.unmount(mnt)
    assert signed_by(proxy) == {key}


def test_profile_from_config(runner, proxy, s3, bucket):
    """-o profile=dev: keys, region and the nested s3 endpoint_url and addressing_style all
    from [profile dev] in ~/.aws/config; no endpoint or region option."""
    runner.write('config', f'[default]\nregion = eu-west-1\n\n'
                 f'[profile dev]\nregion = us-east-1\n'
                 f'aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n'
                 f's3 =\n  endpoint_url = {proxy.endpoint}\n  addressing_style = path\n')
    mnt, r = runner.run(bucket, opts=['profile=dev'], endpoint=False)
    assert_mounted(r, mnt)
    write_and_check(runner, s3, bucket, mnt, 'via-config-profile')
    runner.unmount(mnt)
    assert signed_by(proxy) == {ACCESS_KEY}, 'the mount did not use the proxy from the config'


def test_region_precedence(runner, proxy, s3, bucket):
    """The profile's region signs the requests unless $AWS_REGION (or -o region=) says
    otherwise: the proxy (us-east-1) refuses an eu-west-1 scope."""
    runner.write('config', f'[profile dev]\nregion = eu-west-1\nendpoint_url = {proxy.endpoint}\n'
                 f's3 =\n  addressing_style = path\n')
    runner.write('credentials', f'[dev]\naws_access_key_id = {ACCESS_KEY}\n'
                 f'aws_secret_access_key = {SECRET_KEY}\n')
    env = runner.env(AWS_PROFILE='dev')
    mnt, r = runner.run(bucket, env=env, endpoint=False)
    scoped = [v for v in proxy.take_violations() if v.kind == 'credential' and 'eu-west-1' in v.detail]
    assert scoped, 'the region from the config file did not sign the requests'
    assert_clean_failure(r, mnt, 'bucketfs:')

    mnt, r = runner.run(bucket, env=runner.env(AWS_PROFILE='dev', AWS_REGION='us-east-1'),
                        endpoint=False)
    assert_mounted(r, mnt)
    write_and_check(runner, s3, bucket, mnt, 'region-from-env')
    runner.unmount(mnt)

    mnt, r = runner.run(bucket, opts=['region=us-east-1'], env=env, endpoint=False)
    assert_mounted(r, mnt)
    runner.unmount(mnt)


def test_missing_profile(runner, bucket):
    runner.write('credentials', f'[default]\naws_access_key_id = {ACCESS_KEY}\n'
                 f'aws_secret_access_key = {SECRET_KEY}\n')
    mnt, r = runner.run(bucket, opts=['profile=nosuch'])
    assert_clean_failure(r, mnt, 'profile [nosuch] not found', str(runner.home / '.aws/config'))


@pytest.mark.parametrize('which', ['credentials', 'config', 'passwd'])
def test_open_secret_file_refused(runner, bucket, which):
    """A file with secrets that group or others may read: refused, one line naming it."""
    keys = f'aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n'
    opts = []
    if which == 'credentials':
        path = runner.write('credentials', '[default]\n' + keys, 0o644)
    elif which == 'config':
        path = runner.write('config', '[default]\n' + keys, 0o644)
    else:
        path = runner.write('passwd', f'{ACCESS_KEY}:{SECRET_KEY}\n', 0o644)
        opts = [f'passwd_file={path}']
    mnt, r = runner.run(bucket, opts=opts)
    assert_clean_failure(r, mnt, f'refusing {path}', 'mode 644', 'chmod 600')
    os.chmod(path, 0o600)     # the same file, private: it works
    mnt, r = runner.run(bucket, opts=opts)
    assert_mounted(r, mnt)
    runner.unmount(mnt)


def test_two_profiles_two_mounts(runner, proxy, s3, bucket, second_account):
    """Two mounts at once, each with its own profile's keys, each working on its own bucket."""
    key2, secret2, client2, bucket2 = second_account
    runner.write('credentials', f'[one]\naws_access_key_id = {ACCESS_KEY}\n'
                 f'aws_secret_access_key = {SECRET_KEY}\n\n[two]\naws_access_key_id = {key2}\n'
                 f'aws_secret_access_key = {secret2}\n')
    mnt1, r1 = runner.run(bucket, opts=['profile=one'])
    assert_mounted(r1, mnt1)
    mnt2, r2 = runner.run(bucket2, opts=['profile=two'])
    assert_mounted(r2, mnt2)
    for i in range(3):      # interleaved, both mounts live
        write_and_check(runner, s3, bucket, mnt1, f'one-{i}')
        write_and_check(runner, client2, bucket2, mnt2, f'two-{i}')
    assert sorted(os.listdir(mnt1)) == ['one-0', 'one-1', 'one-2']
    assert sorted(os.listdir(mnt2)) == ['two-0', 'two-1', 'two-2']
    assert signed_by(proxy, bucket) == {ACCESS_KEY}
    assert signed_by(proxy, bucket2) == {key2}
    if on_rgw:  # two accounts for real: the second one may not read the first's bucket
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client2.get_object(Bucket=bucket, Key='one-0')
        assert e.value.response['Error']['Code'] == 'AccessDenied'
    runner.unmount(mnt1)
    runner.unmount(mnt2)


# ---- credential_process ---------------------------------------------------------------------

PROCESS = """#!/usr/bin/python3
# credential_process for the tests: counts its runs in STATE/count; STATE/mode is ok, fail
# or garbage; the keys it gives expire STATE/lifetime seconds from now.
import json, os, sys, time
state = sys.argv[1]
def read(name, default):
    try:
        with open(os.path.join(state, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default
n = int(read('count', '0')) + 1
with open(os.path.join(state, 'count'), 'w') as f:
    f.write(str(n))
mode = read('mode', 'ok')
if mode == 'fail':
    print('the identity provider is down', file=sys.stderr)
    print('(second line)', file=sys.stderr)
    sys.exit(2)
if mode == 'garbage':
    print('<html>Service Unavailable</html>')
    sys.exit(0)
exp = int(time.time()) + int(read('lifetime', '6'))
print(json.dumps({'Version': 1, 'AccessKeyId': KEY, 'SecretAccessKey': SECRET,
                  'SessionToken': f'tok-{n}-{exp}',
                  'Expiration': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(exp))}))
"""


class Process:
    """The test's credential_process script and its state directory."""

    def __init__(self, runner, lifetime):
        self.state = runner.tmp / 'process-state'
        self.state.mkdir()
        self.script = runner.tmp / 'get-creds.py'
        self.script.write_text(PROCESS.replace('KEY', repr(TEMP_KEY), 1)
                               .replace('SECRET', repr(TEMP_SECRET), 1))
        self.script.chmod(0o700)
        self.set('lifetime', lifetime)
        # split by bucketfs like a shell command line: the state dir is one quoted word
        runner.write('config', '[profile proc]\ncredential_process = '
                     f'{shlex.quote(str(self.script))} {shlex.quote(str(self.state))}\n')

    def set(self, name, value):
        (self.state / name).write_text(str(value))

    def runs(self):
        p = self.state / 'count'
        return int(p.read_text()) if p.exists() else 0


def test_credential_process_refresh(runner, proxy, s3, bucket, temp_key):
    """Keys good for 6 s: bucketfs asks the process again before they expire, and I/O goes on
    across the refreshes without a single request refused."""
    proc = Process(runner, lifetime=6)
    mnt, r = runner.run(bucket, opts=['profile=proc'])
    assert_mounted(r, mnt)
    assert proc.runs() == 1
    end, i = time.monotonic() + 14, 0
    while time.monotonic() < end:
        write_and_check(runner, s3, bucket, mnt, f'f{i}')
        assert f'f{i}' in os.listdir(mnt)
        i += 1
        time.sleep(0.3)
    runner.unmount(mnt)
    reqs = proxy.requests()
    tokens = {r.session_token for r in reqs}
    assert proc.runs() >= 3, f'credential_process ran {proc.runs()} times in 14 s'
    assert len(tokens) >= 3, f'only {len(tokens)} session tokens used: {tokens}'
    assert {r.access_key for r in reqs} == {temp_key}
    refused = [(r.op, r.status, r.session_token) for r in reqs if r.status in (400, 403)]
    assert not refused, f'requests refused (keys not refreshed in time): {refused[:5]}'


@pytest.mark.parametrize('mode,message', [
    ('fail', 'exited with status 2: the identity provider is down'),
    ('garbage', 'bad output: not a JSON object')])
def test_credential_process_fails_at_mount(runner, bucket, temp_key, mode, message):
    proc = Process(runner, lifetime=600)
    proc.set('mode', mode)
    mnt, r = runner.run(bucket, opts=['profile=proc'])
    assert_clean_failure(r, mnt, 'credential_process of profile [proc]: ' + message)
    assert proc.runs() == 1


def test_credential_process_failing_refresh(runner, proxy, s3, bucket, temp_key):
    """A refresh that fails is logged and the old keys stay in use until they expire; after
    that S3 refuses them, and once the process works again so does the mount."""
    proc = Process(runner, lifetime=8)
    mnt, r = runner.run(bucket, opts=['profile=proc'], foreground=True)
    assert_mounted(r, mnt)
    proc.set('mode', 'fail')
    t0 = time.time()
    expiry = int(re.fullmatch(r'tok-\d+-(\d+)', next(
        r.session_token for r in proxy.requests() if r.session_token)).group(1))
    i = 0
    while time.time() < expiry - 1:     # still valid: everything works
        write_and_check(runner, s3, bucket, mnt, f'g{i}')
        i += 1
        time.sleep(0.3)
    assert proc.runs() >= 2, 'no refresh was attempted before the keys expired'
    wait_until(lambda: time.time() > expiry + 0.5, 10)
    with pytest.raises(OSError):        # expired, no new ones: refused
        os.stat(os.path.join(mnt, f'absent-{uuid.uuid4().hex}'))
    proc.set('mode', 'ok')

    def works():
        try:
            os.stat(os.path.join(mnt, f'absent-{uuid.uuid4().hex}'))
        except FileNotFoundError:
            return True
        except OSError:
            return False
    assert wait_until(works, 15), 'the mount did not recover once the process worked again'
    write_and_check(runner, s3, bucket, mnt, 'after-recovery')
    runner.unmount(mnt)
    log = open(r.log).read()
    assert 'cannot refresh the credentials' in log and \
        'credential_process of profile [proc]: exited with status 2: the identity provider ' \
        'is down; still using the current ones' in log, log
    assert '(second line)' not in log
    assert TEMP_SECRET not in log and 'tok-' not in log, 'a secret in the log'
    assert time.time() - t0 < 60


# ---- EC2 instance metadata (IMDSv2) ---------------------------------------------------------

class ImdsStub:
    """IMDSv2 on 127.0.0.1: PUT /latest/api/token (with a TTL header) hands out a session
    token; GETs must carry one it handed out (else 401, counted in .unauthorized) for the role
    name and its keys: TEMP_KEY with session tokens tok-N-EXPIRY, good for `lifetime` s."""

    def __init__(self, lifetime):
        self.lifetime, self.tokens, self.fetches, self.puts, self.unauthorized = \
            lifetime, set(), 0, 0, 0
        self.lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=b''):
                self.send_response(status)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                ttl = self.headers.get('X-aws-ec2-metadata-token-ttl-seconds', '')
                if self.path != '/latest/api/token' or not ttl.isdigit():
                    return self.reply(400)
                token = uuid.uuid4().hex
                with stub.lock:
                    stub.puts += 1
                    stub.tokens.add(token)
                self.reply(200, token.encode())

            def do_GET(self):
                with stub.lock:
                    if self.headers.get('X-aws-ec2-metadata-token') not in stub.tokens:
                        stub.unauthorized += 1
                        return self.reply(401)
                    base = '/latest/meta-data/iam/security-credentials/'
                    if self.path == base:
                        return self.reply(200, b'bfs-test-role')
                    if self.path != base + 'bfs-test-role':
                        return self.reply(404)
                    stub.fetches += 1
                    exp = int(time.time()) + stub.lifetime
                    doc = {'Code': 'Success', 'Type': 'AWS-HMAC', 'AccessKeyId': TEMP_KEY,
                           'SecretAccessKey': TEMP_SECRET,
                           'Token': f'tok-{stub.fetches}-{exp}',
                           'LastUpdated': time.strftime('%Y-%m-%dT%H:%M:%SZ'),
                           'Expiration': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(exp))}
                self.reply(200, json.dumps(doc).encode())

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.endpoint = f'http://127.0.0.1:{self.server.server_address[1]}'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def imds_stub():
    stubs = []

    def start(lifetime=600):
        stubs.append(ImdsStub(lifetime))
        return stubs[-1]
    yield start
    for s in stubs:
        s.stop()


def test_imds_refresh(runner, proxy, s3, bucket, temp_key, imds_stub):
    """No keys anywhere: the instance role's, from IMDSv2 (-o imds_endpoint=), renewed before
    they expire while I/O goes on."""
    stub = imds_stub(lifetime=6)
    mnt, r = runner.run(bucket, opts=[f'imds_endpoint={stub.endpoint}'],
                        env=runner.env(AWS_EC2_METADATA_DISABLED=None))
    assert_mounted(r, mnt)
    assert stub.fetches == 1
    end, i = time.monotonic() + 14, 0
    while time.monotonic() < end:
        write_and_check(runner, s3, bucket, mnt, f'i{i}')
        i += 1
        time.sleep(0.3)
    runner.unmount(mnt)
    reqs = proxy.requests()
    assert stub.fetches >= 3, f'the keys were fetched {stub.fetches} times in 14 s'
    assert stub.puts >= stub.fetches, 'not one session token per fetch'
    assert stub.unauthorized == 0, 'a metadata GET without the session token'
    assert len({r.session_token for r in reqs}) >= 3
    assert {r.access_key for r in reqs} == {temp_key}
    refused = [(r.op, r.status) for r in reqs if r.status in (400, 403)]
    assert not refused, f'requests refused (keys not renewed in time): {refused[:5]}'


def test_imds_environment_and_absence(runner, proxy, s3, bucket, temp_key, imds_stub):
    """$AWS_EC2_METADATA_SERVICE_ENDPOINT names the service; without one, the mount fails at
    once with every place it looked; AWS_EC2_METADATA_DISABLED=true does not ask at all."""
    stub = imds_stub()
    mnt, r = runner.run(bucket, env=runner.env(AWS_EC2_METADATA_DISABLED=None,
                                               AWS_EC2_METADATA_SERVICE_ENDPOINT=stub.endpoint))
    assert_mounted(r, mnt)
    write_and_check(runner, s3, bucket, mnt, 'via-imds')
    runner.unmount(mnt)
    assert stub.fetches == 1 and stub.unauthorized == 0

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        closed = f'http://127.0.0.1:{sock.getsockname()[1]}'
    mnt, r = runner.run(bucket, opts=[f'imds_endpoint={closed}'],
                        env=runner.env(AWS_EC2_METADATA_DISABLED=None))
    assert_clean_failure(r, mnt, 'no credentials found (looked in: $AWS_ACCESS_KEY_ID',
                         '.aws/credentials [default]', '.aws/config [default]',
                         f'EC2 instance metadata: no session token from {closed}/latest/api/token')
    assert r.seconds < 10, f'{r.seconds:.1f} s to find there is no instance metadata'

    mnt, r = runner.run(bucket, opts=[f'imds_endpoint={stub.endpoint}'],
                        env=runner.env(AWS_EC2_METADATA_DISABLED='true'))
    assert_clean_failure(r, mnt, 'EC2 instance metadata: off, AWS_EC2_METADATA_DISABLED is true')
    assert stub.puts == 1, 'the metadata service was asked although disabled'
