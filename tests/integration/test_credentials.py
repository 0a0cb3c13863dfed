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
import os
import subprocess
import time
import uuid

import botocore.exceptions
import pytest

from conftest import ACCESS_KEY, SECRET_KEY, bfs_bin, make_client, on_rgw
from helpers import is_mounted, s3_body, wait_until, write_file

SECOND_KEY, SECOND_SECRET = 'BFSSECONDACCOUNT0001', 'second/Account+Secret'
TEMP_KEY, TEMP_SECRET = 'BFSTEMPORARYKEY00001', 'temporary/Secret+Key'


def daemon_pids(mountpoint):
    pids = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/cmdline', 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        if os.fsencode(mountpoint) in argv and argv[0].endswith(b'bucketfs'):
            pids.append(int(d))
    return pids


class Runner:
    """bin/bucketfs with a clean environment (HOME = self.home, no AWS_* variables)."""

    def __init__(self, proxy, tmp):
        self.proxy, self.tmp = proxy, tmp
        self.home = tmp / 'home'
        (self.home / '.aws').mkdir(parents=True)
        self.mounted = []

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
        endpoint=<proxy>,path_style,region=us-east-1 to the options."""
        mnt = str(self.tmp / f'mnt{len(self.mounted)}')
        os.mkdir(mnt)
        o = [f'cache_dir={self.tmp / f"cache{len(self.mounted)}"}']
        if endpoint:
            o += [f'endpoint={self.proxy.endpoint}', 'path_style', 'region=us-east-1']
        self.mounted.append(mnt)
        t0 = time.monotonic()
        r = subprocess.run([bfs_bin(), bucket, mnt, '-o', ','.join(o + list(opts))],
                           env=env or self.env(), capture_output=True, text=True, timeout=90)
        r.seconds = time.monotonic() - t0
        return mnt, r

    def unmount(self, mnt):
        pids = daemon_pids(mnt)
        subprocess.run(['fusermount3', '-u', mnt], check=True)
        assert wait_until(lambda: not any(os.path.exists(f'/proc/{p}') for p in pids), 60), \
            'daemon still running 60 s after fusermount3 -u'

    def cleanup(self):
        for mnt in self.mounted:
            if is_mounted(mnt):
                subprocess.run(['fusermount3', '-u', mnt])
                wait_until(lambda: not daemon_pids(mnt), 30)


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
