"""A server that rejects or drops uploads: fsync() and close() with sync_close report EIO,
never success, and nothing is lost: the data stays in the journal and reaches S3 once the
server behaves."""
import errno
import os
import time

import pytest

from helpers import s3_body, s3_keys


def write_then_fsync(path, data):
    """Writes data, fsyncs, returns the fsync error number (0 if none); always closes (with
    close-to-open the close tries the upload again, and fails the same way when fsync did)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    err = 0
    try:
        os.write(fd, data)
        os.fsync(fd)
    except OSError as e:
        err = e.errno
    try:
        os.close(fd)
    except OSError as e:
        assert err and e.errno == err, f'close failed ({e}) after fsync gave {err}'
    return err


@pytest.mark.parametrize('how', ['baddigest', 'disconnect'])
def test_fsync_reports_failed_upload_then_recovers(mount, bucket, s3, proxy, how):
    # a connection cut before any answer is a server that cannot be reached: it is retried
    # for server_wait (60 s by default; test_faults.py waits out a server that is away)
    m = mount(bucket, opts=['server_wait=3'] if how == 'disconnect' else [])
    data = os.urandom(300_000)
    if how == 'baddigest':
        f = proxy.fault('error', op='PutObject', count=None, status=400, code='BadDigest')
    else:
        f = proxy.fault('disconnect', op='PutObject', count=None, before=True)
    assert write_then_fsync(os.path.join(m.path, 'f'), data) == errno.EIO
    assert f.hits >= 2, f'the upload was not retried ({f.hits} attempts)'
    assert 'f' not in s3_keys(s3, bucket)
    proxy.clear_faults()
    # still in the journal: the next fsync (or the unmount) uploads it
    fd = os.open(os.path.join(m.path, 'f'), os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert s3_body(s3, bucket, 'f') == data
    m.unmount()
    assert s3_body(s3, bucket, 'f') == data


def test_sync_close_reports_failed_upload(mount, bucket, s3, proxy):
    m = mount(bucket, opts=['sync_close'])
    proxy.fault('error', op='PutObject', count=None, status=400, code='BadDigest')
    with pytest.raises(OSError) as e:
        with open(os.path.join(m.path, 'g'), 'wb') as fh:
            fh.write(b'payload')
    assert e.value.errno == errno.EIO
    proxy.clear_faults()
    m.unmount()  # the journal entry is uploaded before the daemon exits
    assert s3_body(s3, bucket, 'g') == b'payload'


def test_permanent_refusal_is_reported_once_and_not_retried_on_a_timer(mount, bucket, s3, proxy):
    """S3 refusing the request itself (400 InvalidArgument: the same request fails the same
    way however often it is sent) makes fsync fail at once, is logged once, whole, and is not
    retried in the background; the data stays in the journal, and an fsync after the cause
    is gone uploads it."""
    m = mount(bucket)
    data = os.urandom(200_000)
    f = proxy.fault('error', op='PutObject', count=None, status=400, code='InvalidArgument')
    p = os.path.join(m.path, 'refused')
    assert write_then_fsync(p, data) == errno.EINVAL
    assert f.hits == 1, f'a refused request was sent {f.hits} times'
    time.sleep(3.5)       # retryable failures back off 1 s, 2 s: two more tries by now
    assert f.hits == 1, f'a refused upload was retried on a timer ({f.hits} attempts)'
    lines = [ln for ln in m.log_text().splitlines() if 'upload failed' in ln]
    assert len(lines) == 1, f'expected the failure logged once: {lines}'
    assert 'InvalidArgument' in lines[0] and 'refused' in lines[0], lines[0]
    assert 'refused' not in s3_keys(s3, bucket)
    proxy.clear_faults()
    fd = os.open(p, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert s3_body(s3, bucket, 'refused') == data
