"""Logging, the slow-call log (-o slow_ms=) and live statistics (bin/bucketfs-stat).
docs/stats.md describes the log lines and the statistics these tests check."""
import errno
import os
import re

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
