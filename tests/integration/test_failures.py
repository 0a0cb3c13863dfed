"""Start-up failures, credential sources, and S3 errors while mounted.

The start-up tests run bin/bucketfs directly, daemonizing as a user would (no -f), so that each
test controls the whole command line and environment: no AWS_* variables, HOME an empty directory,
unless the test adds them. A failure must exit != 0 with ONE clear line on stderr and leave
nothing mounted and no daemon behind. The foreground (-f) path is checked through `mount`."""
import os
import socket
import stat
import subprocess
import time

import pytest

from conftest import bfs_bin, daemon_pids
from helpers import fmt_stats, is_mounted, s3_body, s3_keys, wait_until, write_file


class Runner:
    """Runs bin/bucketfs against the audit proxy with a clean environment."""

    def __init__(self, proxy, tmp_path):
        self.bin = bfs_bin()
        self.proxy = proxy
        self.tmp = tmp_path
        self.home = tmp_path / 'home'
        self.home.mkdir()
        self.key, self.secret = next(iter(proxy.credentials.items()))
        self.mounted = []

    def env(self, creds=True, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
        env['HOME'] = str(self.home)
        env['AWS_EC2_METADATA_DISABLED'] = 'true'   # never the real 169.254.169.254
        if creds:
            env['AWS_ACCESS_KEY_ID'], env['AWS_SECRET_ACCESS_KEY'] = self.key, self.secret
        env.update(extra)
        return env

    def mountpoint(self):
        p = self.tmp / f'mnt{len(self.mounted)}'
        p.mkdir()
        return str(p)

    def run(self, bucket, mnt, opts=(), env=None, endpoint=None, timeout=90):
        o = [f'endpoint={endpoint or self.proxy.endpoint}', 'path_style', 'region=us-east-1',
             f'cache_dir={self.tmp / "cache"}'] + list(opts)
        self.mounted.append(mnt)
        t0 = time.monotonic()
        r = subprocess.run([self.bin, bucket, mnt, '-o', ','.join(o)], env=env or self.env(),
                           capture_output=True, text=True, timeout=timeout)
        r.seconds = time.monotonic() - t0
        return r

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


def assert_clean_failure(r, mnt, *wanted):
    """exit != 0, exactly one non-empty stderr line containing one of `wanted` (case-insensitive),
    nothing mounted on mnt and no daemon for it."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0, f'exit status 0 for a failing mount; stderr: {r.stderr!r}'
    assert len(lines) == 1, f'expected one line on stderr, got {len(lines)}: {r.stderr!r}'
    assert any(w.lower() in lines[0].lower() for w in wanted), \
        f'stderr line {lines[0]!r} mentions none of {wanted}'
    assert not is_mounted(mnt), f'{mnt} is still mounted after a failed start'
    assert wait_until(lambda: not daemon_pids(mnt), 5), \
        f'bucketfs processes left for {mnt}: {daemon_pids(mnt)}'


def assert_works(runner, s3, bucket, mnt, r, name='probe'):
    """The mount started, a file written through it lands in S3, and it unmounts cleanly."""
    assert r.returncode == 0, f'mount failed ({r.returncode}): {r.stderr!r}'
    assert wait_until(lambda: is_mounted(mnt), 10), f'{mnt} not mounted after bucketfs exited 0'
    write_file(os.path.join(mnt, name), b'written through the mount')
    runner.unmount(mnt)
    assert s3_body(s3, bucket, name) == b'written through the mount'


def test_unknown_bucket(runner):
    mnt = runner.mountpoint()
    r = runner.run('no-such-bucket-7f3a', mnt)
    assert_clean_failure(r, mnt, 'no-such-bucket-7f3a', 'NoSuchBucket', 'does not exist')


def test_access_denied(runner, proxy, bucket):
    proxy.fault('error', status=403, code='AccessDenied', count=None)
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt)
    assert_clean_failure(r, mnt, 'denied', '403')


def test_invalid_access_key_injected(runner, proxy, bucket):
    proxy.fault('error', status=403, code='InvalidAccessKeyId', count=None)
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt)
    assert_clean_failure(r, mnt, 'InvalidAccessKeyId', 'access key', '403')


@pytest.mark.parametrize('which', ['key', 'secret'])
def test_bad_credentials(runner, proxy, bucket, which):
    """The proxy checks SigV4 like S3: an unknown key or a wrong secret is refused with 403."""
    env = runner.env(AWS_ACCESS_KEY_ID='AKIANOSUCHKEY0000000' if which == 'key' else runner.key,
                     AWS_SECRET_ACCESS_KEY=runner.secret if which == 'key' else 'wrong-secret')
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, env=env)
    refused = [v for v in proxy.take_violations() if v.kind in ('credential', 'signature')]
    assert refused, 'the proxy saw no request with the bad credentials'
    assert_clean_failure(r, mnt, 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'access key',
                         'signature', 'credential', '403', 'denied')


def test_unreachable_endpoint(runner, bucket):
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, endpoint=f'http://127.0.0.1:{port}')
    assert_clean_failure(r, mnt, f'127.0.0.1:{port}', 'connect', 'refused', 'unreachable')
    assert r.seconds < 60, f'took {r.seconds:.0f} s to give up on a closed port'


@pytest.mark.parametrize('case', ['unknown-bucket', 'bad-option', 'denied'])
def test_foreground_failure(mount, proxy, bucket, case):
    """With -f (the mount fixture's default) a failed start exits != 0 with one line too."""
    if case == 'denied':
        proxy.fault('error', status=403, code='AccessDenied', count=None)
    r = mount('no-such-bucket-fg' if case == 'unknown-bucket' else bucket,
              opts=['stat_ttl=-x'] if case == 'bad-option' else [], check=False)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0, f'{case}: mounted or exited 0: {r.stderr!r}'
    assert len(lines) == 1, f'{case}: expected one line of output, got {r.stderr!r}'


def test_region_option_signs_requests(runner, proxy, bucket):
    """region= is the signing region: the proxy (us-east-1) sees and refuses an eu-west-1 scope."""
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=['region=eu-west-1'])
    seen = [v for v in proxy.take_violations() if v.kind == 'credential' and 'eu-west-1' in v.detail]
    assert seen, 'no request was signed for region eu-west-1'
    if r.returncode == 0:  # a client may retry in the region the error names; then it must work
        runner.unmount(mnt)
    else:
        assert_clean_failure(r, mnt, 'region', 'AuthorizationHeaderMalformed', 'credential', '400', '403')


@pytest.mark.parametrize('opt,word', [('stat_ttl=abc', 'stat_ttl'), ('nosuchoption', 'nosuchoption'),
                                      ('umask=9z', 'umask'), ('upload_delay=soon', 'upload_delay'),
                                      ('uid=alice', 'uid')])
def test_bad_option(runner, proxy, bucket, opt, word):
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=[opt])
    assert_clean_failure(r, mnt, word)


def test_missing_mountpoint(runner, bucket, tmp_path):
    mnt = str(tmp_path / 'does' / 'not' / 'exist')
    r = runner.run(bucket, mnt)
    assert_clean_failure(r, mnt, mnt, 'mountpoint', 'mount point')
    assert not os.path.exists(mnt), 'bucketfs created the missing mountpoint'


def test_no_credentials(runner, bucket):
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, env=runner.env(creds=False))
    assert_clean_failure(r, mnt, 'credential', 'AWS_ACCESS_KEY_ID', 'passwd')


@pytest.mark.parametrize('mode', [0o644, 0o640, 0o604])
def test_passwd_file_readable_by_others_refused(runner, bucket, mode):
    pw = runner.tmp / 'passwd'
    write_file(pw, f'{runner.key}:{runner.secret}\n'.encode())
    os.chmod(pw, mode)
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=[f'passwd_file={pw}'], env=runner.env(creds=False))
    assert_clean_failure(r, mnt, str(pw), 'passwd')


def test_passwd_file_0600_works(runner, s3, bucket):
    pw = runner.tmp / 'passwd'
    write_file(pw, f'{runner.key}:{runner.secret}\n'.encode())
    os.chmod(pw, 0o600)
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=[f'passwd_file={pw}'], env=runner.env(creds=False))
    assert_works(runner, s3, bucket, mnt, r)


def test_cache_dir_of_another_user_refused(runner, s3, bucket):
    """A cache_dir holds file data and the journal: one owned by another user (here nobody,
    65534, as in a /tmp directory somebody else made) is refused with one line, and nothing
    in it is touched."""
    cache = runner.tmp / 'cache'
    cache.mkdir()
    os.chown(cache, 65534, 65534)
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt)
    assert_clean_failure(r, mnt, 'belongs to another user')
    assert os.listdir(cache) == [], os.listdir(cache)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o755


def test_cache_dir_is_private(runner, s3, bucket):
    """A cache_dir open to others is closed to 0700 at mount; every directory bucketfs makes
    in it is 0700 and every file 0600 (blocks, index, journal data, lock)."""
    cache = runner.tmp / 'cache'
    cache.mkdir(mode=0o755)
    os.chmod(cache, 0o755)
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=['consistency=writeback', 'upload_delay=60'])
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: is_mounted(mnt), 10)
    s3.put_object(Bucket=bucket, Key='cached', Body=b'c' * 100000)
    with open(os.path.join(mnt, 'cached'), 'rb') as f:
        assert f.read() == b'c' * 100000
    write_file(os.path.join(mnt, 'pending'), b'in the journal')  # upload_delay: stays
    seen = {'dir': 0, 'file': 0}
    for root, dirs, files in os.walk(cache):
        assert stat.S_IMODE(os.stat(root).st_mode) == 0o700, root
        seen['dir'] += 1
        for f in files:
            st = os.lstat(os.path.join(root, f))
            assert stat.S_IMODE(st.st_mode) == 0o600, (os.path.join(root, f), oct(st.st_mode))
            seen['file'] += 1
    assert seen['dir'] >= 4 and seen['file'] >= 4, seen  # cache, index, blocks, dirty ...
    runner.unmount(mnt)
    assert s3_body(s3, bucket, 'pending') == b'in the journal'


def write_aws_credentials(runner, profiles):
    d = runner.home / '.aws'
    d.mkdir(exist_ok=True)
    text = ''.join(f'[{name}]\naws_access_key_id = {k}\naws_secret_access_key = {s}\n\n'
                   for name, (k, s) in profiles.items())
    write_file(d / 'credentials', text.encode())
    os.chmod(d / 'credentials', 0o600)


def test_aws_credentials_profile(runner, proxy, s3, bucket):
    write_aws_credentials(runner, {'default': ('AKIAWRONGDEFAULT0000', 'nope'),
                                   'work': (runner.key, runner.secret)})
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=['profile=work'], env=runner.env(creds=False))
    assert_works(runner, s3, bucket, mnt, r, 'via-profile')
    # and without profile= the (wrong) default profile is the one used
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, env=runner.env(creds=False))
    assert proxy.take_violations(), 'the default profile was not used'
    assert_clean_failure(r, mnt, 'InvalidAccessKeyId', 'access key', 'credential', '403', 'denied')
    assert s3_keys(s3, bucket) == {'via-profile'}


def test_credentials_file_default_profile(runner, s3, bucket):
    write_aws_credentials(runner, {'default': (runner.key, runner.secret)})
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, env=runner.env(creds=False))
    assert_works(runner, s3, bucket, mnt, r, 'via-default-profile')


def test_passwd_file_option_wins_over_credentials_file(runner, s3, bucket):
    write_aws_credentials(runner, {'default': ('AKIAWRONGDEFAULT0000', 'nope')})
    pw = runner.tmp / 'passwd'
    write_file(pw, f'{runner.key}:{runner.secret}\n'.encode())
    os.chmod(pw, 0o600)
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=[f'passwd_file={pw}'], env=runner.env(creds=False))
    assert_works(runner, s3, bucket, mnt, r, 'via-passwd-file')


def test_environment_wins_over_files(runner, s3, bucket):
    write_aws_credentials(runner, {'default': ('AKIAWRONGDEFAULT0000', 'nope')})
    pw = runner.tmp / 'passwd'
    write_file(pw, b'AKIAWRONGPASSWD00000:nope\n')
    os.chmod(pw, 0o600)
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=[f'passwd_file={pw}'])  # runner.env() has the right keys
    assert_works(runner, s3, bucket, mnt, r, 'via-env')


def test_kill9_leaves_no_mount_after_cleanup_and_remounts(runner, s3, bucket):
    """After the daemon is killed, fusermount3 -u frees the mountpoint and a new mount works and
    sees what was already uploaded (sync_close)."""
    mnt = runner.mountpoint()
    r = runner.run(bucket, mnt, opts=['sync_close'])
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: is_mounted(mnt), 10)
    write_file(os.path.join(mnt, 'before'), b'uploaded at close')
    for pid in daemon_pids(mnt):
        os.kill(pid, 9)
    assert wait_until(lambda: not daemon_pids(mnt), 10)
    subprocess.run(['fusermount3', '-u', mnt], check=True)
    assert not is_mounted(mnt)
    assert s3_body(s3, bucket, 'before') == b'uploaded at close'
    r = runner.run(bucket, mnt)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISREG(os.stat(os.path.join(mnt, 'before')).st_mode)
    runner.unmount(mnt)


# ---- transient S3 errors while mounted: retried, invisible to applications ----

def test_transient_errors_are_retried(mount, bucket, s3, proxy):
    data = os.urandom(300000)
    s3.put_object(Bucket=bucket, Key='remote', Body=data)
    m = mount(bucket)
    get_fault = proxy.fault('error', op='GetObject', count=2, status=503)
    with open(os.path.join(m.path, 'remote'), 'rb') as f:
        assert f.read() == data, 'read returned wrong data after 503s'
    assert get_fault.hits == 2, f'GetObject fault hit {get_fault.hits} times (the read did not go to S3?)'
    put_fault = proxy.fault('error', op='PutObject', count=2, status=500)
    write_file(os.path.join(m.path, 'local'), data[::-1])
    m.unmount()
    assert put_fault.hits == 2, f'PutObject fault hit {put_fault.hits} times'
    assert s3_body(s3, bucket, 'local') == data[::-1], 'upload lost after 500s'


def test_dropped_connections_are_retried(mount, bucket, s3, proxy):
    data = os.urandom(2 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key='remote', Body=data)
    m = mount(bucket)
    cut = proxy.fault('disconnect', op='GetObject', count=1)
    with open(os.path.join(m.path, 'remote'), 'rb') as f:
        assert f.read() == data, 'read returned wrong data after a connection was cut mid-body'
    assert cut.hits == 1
    lost = proxy.fault('disconnect', op='PutObject', count=1, before=True)
    write_file(os.path.join(m.path, 'local'), data[:1000])
    m.unmount()
    assert lost.hits == 1
    assert s3_body(s3, bucket, 'local') == data[:1000]


def test_multipart_part_errors_are_retried(mount, bucket, s3, proxy, tmp_path):
    data = os.urandom(20 * 1024 * 1024)
    m = mount(bucket)
    part_fault = proxy.fault('error', op='UploadPart', count=2, status=503)
    write_file(os.path.join(m.path, 'big'), data)
    m.unmount()
    assert part_fault.hits == 2, f'UploadPart fault hit {part_fault.hits} times (no multipart upload?)'
    assert s3_body(s3, bucket, 'big') == data, 'multipart upload incomplete after part errors'
    st = proxy.stats()  # s3rver has no ListMultipartUploads: count starts and ends instead
    started, ended = st.get('CreateMultipartUpload', 0), st.get('CompleteMultipartUpload', 0) + \
        st.get('AbortMultipartUpload', 0)
    assert started >= 1 and started == ended, f'multipart uploads left open: {fmt_stats(st)}'
