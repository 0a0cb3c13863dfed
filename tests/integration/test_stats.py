"""Logging, the slow-call log (-o slow_ms=) and live statistics (bin/bucketfs-stat).
docs/stats.md describes the log lines and the statistics these tests check."""
import errno
import os
import re
import subprocess

import pytest

from helpers import reset_counters

FAIL_RE = re.compile(r'bucketfs error: s3 (\w+) failed: status=(\d+) code=(\S+) '
                     r'request_id=(\S+) attempts=(\d+) error=(\w+)(?: \(.*\))? key=(.*)$')
RETRY_RE = re.compile(r'bucketfs debug: s3 (\w+) failed, retrying: status=(\d+) code=(\S+) '
                      r'request_id=(\S+) attempts=(\d+) error=(\w+)(?: \(.*\))? key=(.*)$')
RETRIES = 5          # s3_config.retries default: 6 attempts in all


def log_lines(m, pattern):
    return [mt for mt in (pattern.search(line) for line in m.log_text().splitlines()) if mt]


def close_after_write(path, data):
    """Writes data to a new file; the errno close() gives (0: none)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, data)
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


@pytest.mark.parametrize('level', ['info', 'debug'])
def test_failed_request_is_logged_once(mount, bucket, proxy, level):
    m = mount(bucket, opts=[f'log_level={level}'])
    reset_counters(proxy)
    put = proxy.fault('error', op='PutObject', key='^failing$', status=500, count=RETRIES + 1)
    assert close_after_write(os.path.join(m.path, 'failing'), b'x' * 100) == errno.EIO
    assert put.hits == RETRIES + 1
    ids = [r for r in proxy.requests() if r.op == 'PutObject' and r.key == 'failing']
    assert len(ids) == RETRIES + 1 and all(r.status == 500 for r in ids)

    fails = [f for f in log_lines(m, FAIL_RE) if f.group(7) == 'failing']
    assert len(fails) == 1, m.log_text()
    op, status, code, rid, attempts, err, _ = fails[0].groups()
    assert (op, status, code, attempts, err) == ('PutObject', '500', 'InternalError',
                                                 str(RETRIES + 1), 'EIO')
    assert re.fullmatch(r'[0-9A-F]{16}', rid), rid      # the proxy's x-amz-request-id
    retries = [r for r in log_lines(m, RETRY_RE) if r.group(7) == 'failing']
    if level == 'debug':
        assert [r.group(5) for r in retries] == [str(i) for i in range(1, RETRIES + 1)]
        assert all(r.group(1, 2, 3) == ('PutObject', '500', 'InternalError') for r in retries)
        assert len({r.group(4) for r in retries} | {rid}) == RETRIES + 1, 'request ids repeat'
    else:
        assert retries == []
    for secret in ('S3RVER', 'Signature=', 'Authorization'):
        assert secret not in m.log_text().split('\n', 1)[1], f'{secret} in the log'


# ---------------------------------------------------------------- slow_ms --

SLOW_RE = re.compile(r' bucketfs info: slow (fuse|s3) (\S+) (\d+\.\d{9}) (.*)$')


def slow_lines(m, offset=0):
    """(kind, name, seconds text, rest) of every slow-call line after byte offset of the log."""
    with open(m.log, 'rb') as f:
        f.seek(offset)
        text = f.read().decode(errors='replace')
    return [mt.groups() for mt in (SLOW_RE.search(line) for line in text.splitlines()) if mt]


def workload(root):
    """A little of everything: mkdir, create+write, stat, read, list, rename, unlink."""
    d = os.path.join(root, 'd')
    os.mkdir(d)
    for i in range(3):
        with open(os.path.join(d, f'f{i}'), 'wb') as f:
            f.write(b'%d' % i * 1000)
    os.stat(os.path.join(d, 'f1'))
    with open(os.path.join(d, 'f1'), 'rb') as f:
        assert f.read() == b'1' * 1000
    assert sorted(os.listdir(d)) == ['f0', 'f1', 'f2']
    os.rename(os.path.join(d, 'f0'), os.path.join(d, 'g0'))
    os.unlink(os.path.join(d, 'f2'))


def test_slow_ms_0_logs_every_call_in_the_documented_format(mount, bucket, proxy):
    m = mount(bucket, opts=['slow_ms=0'])
    reset_counters(proxy)
    offset = os.path.getsize(m.log)
    workload(m.path)
    m.unmount()                            # every request is over, and logged
    lines = slow_lines(m, offset)
    assert lines, m.log_text()

    # every S3 request the proxy saw is one line, with its operation's name
    seen = {}
    for kind, name, _, rest in lines:
        if kind == 's3':
            assert re.fullmatch(r'status=\d+ (key|bucket)=.+', rest), rest
            seen[name] = seen.get(name, 0) + 1
    counts = {k: v for k, v in proxy.stats().items() if not k.startswith('bytes_') and v}
    assert seen == counts
    assert seen.get('PutObject', 0) >= 3 and seen.get('CopyObject', 0) >= 1
    s3_keys = {rest.split(' key=', 1)[1] for kind, _, _, rest in lines
               if kind == 's3' and ' key=' in rest}
    assert {'d/', 'd/f1', 'd/g0'} <= s3_keys

    # the FUSE calls, each with the path it works on
    fuse = {(name, rest) for kind, name, _, rest in lines if kind == 'fuse'}
    for want in [('MKDIR', 'path=d'), ('CREATE', 'path=d/f0'), ('WRITE', 'path=d/f1'),
                 ('FLUSH', 'path=d/f2'), ('OPEN', 'path=d/f1'), ('READ', 'path=d/f1'),
                 ('READDIRPLUS', 'path=d'), ('RENAME', 'path=d/f0 newpath=d/g0'),
                 ('UNLINK', 'path=d/f2')]:
        assert want in fuse, f'{want} not logged; got {sorted(fuse)}'
    assert any(name == 'LOOKUP' for name, _ in fuse)

    # durations: seconds with exactly 9 decimals, in field 8 of a line, so `sort -n` sorts
    secs = [float(s) for _, _, s, _ in lines]
    assert all(0 <= s < 60 for s in secs)
    assert any(s > 0 for s in secs)
    raw = [line for line in m.log_text().splitlines()[-100000:] if SLOW_RE.search(line)]
    out = subprocess.run(['sort', '-n', '-k8,8'], input='\n'.join(raw) + '\n', text=True,
                         capture_output=True, check=True).stdout.splitlines()
    sorted_secs = [float(line.split()[7]) for line in out]
    assert sorted_secs == sorted(float(line.split()[7]) for line in raw)
    assert len(out) == len(raw)


def test_large_slow_ms_logs_nothing(mount, bucket, proxy):
    m = mount(bucket, opts=['slow_ms=600000'])
    workload(m.path)
    m.unmount()
    assert proxy.stats().get('PutObject', 0) >= 3
    assert slow_lines(m) == []
    assert ' slow ' not in m.log_text()
