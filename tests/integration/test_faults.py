"""A misbehaving server, injected by the audit proxy: transient errors are retried and the
operation succeeds; a stalled request is cut after `timeout=` and retried while other files
stay readable; a body cut short is fetched again; a server that is down for 30 s while files
are written loses nothing: close() succeeds (the data is in the journal, the documented
write-back contract), fsync() fails with EIO while the server is away, and every file
reaches S3, whole, once it is back."""
import errno
import os
import threading
import time

import pytest

from helpers import read_file, s3_body, s3_head, s3_keys, wait_until, write_file


def test_transient_errors_are_retried(mount, bucket, s3, proxy):
    m = mount(bucket)
    data = os.urandom(200_000)
    put = proxy.fault('error', op='PutObject', count=3, status=503)
    with open(os.path.join(m.path, 'f'), 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    assert put.hits == 3
    assert s3_body(s3, bucket, 'f') == data
    s3.put_object(Bucket=bucket, Key='g', Body=data)
    get = proxy.fault('error', op='GetObject', count=2, status=500)
    assert read_file(os.path.join(m.path, 'g')) == data
    assert get.hits == 2


def test_stalled_request_is_cut_and_retried_without_hanging_the_mount(mount, bucket, s3,
                                                                      proxy):
    for name in ('slow', 'other'):
        s3.put_object(Bucket=bucket, Key=name, Body=name.encode() * 1000)
    m = mount(bucket, opts=['timeout=2', 'log_level=debug'])   # retries are logged at debug
    os.stat(os.path.join(m.path, 'slow'))
    os.stat(os.path.join(m.path, 'other'))
    stall = proxy.fault('stall', op='GetObject', key='^slow$', count=1)
    result = {}

    def slow_read():
        t = time.monotonic()
        result['data'] = read_file(os.path.join(m.path, 'slow'))
        result['took'] = time.monotonic() - t
    th = threading.Thread(target=slow_read)
    th.start()
    assert wait_until(lambda: stall.hits == 1, 10)
    t = time.monotonic()
    assert read_file(os.path.join(m.path, 'other')) == b'other' * 1000
    assert time.monotonic() - t < 1.5, 'another file waited for the stalled request'
    th.join(30)
    assert not th.is_alive(), 'the stalled read never finished'
    assert result['data'] == b'slow' * 1000
    assert 1.5 <= result['took'] < 15, f"stalled read took {result['took']:.1f} s"
    assert 's3 GetObject failed, retrying' in m.log_text()


def test_body_cut_short_is_fetched_again(mount, bucket, s3, proxy):
    data = os.urandom(3 << 20)
    s3.put_object(Bucket=bucket, Key='big', Body=data)
    m = mount(bucket)
    cut = proxy.fault('disconnect', op='GetObject', count=2)
    assert read_file(os.path.join(m.path, 'big')) == data
    assert cut.hits == 2


@pytest.mark.parametrize('writer', ['bucketfs', 'other'])
def test_body_shorter_than_promised_is_fetched_again(mount, bucket, s3, proxy, writer):
    """A response whose body is shorter than the range or object it answers, framed as if
    complete (Content-Length says so; a proxy or server that lost data): fetched again, and
    when every answer is short, EIO, never short or shifted data. 'other': an object
    without bucketfs's block digests, where only the length can tell."""
    data = os.urandom((3 << 20) + 12345)
    m = mount(bucket)
    for name in ('big', 'always', 'small'):
        body = data if name != 'small' else data[:1000]
        if writer == 'bucketfs':
            write_file(os.path.join(m.path, name), body)
        else:
            s3.put_object(Bucket=bucket, Key=name, Body=body)
    m.remount()                                    # nothing in the cache
    short = proxy.fault('short', op='GetObject', key='^(big|small)$', count=3)
    assert read_file(os.path.join(m.path, 'big')) == data
    assert read_file(os.path.join(m.path, 'small')) == data[:1000]
    assert short.hits == 3
    proxy.fault('short', op='GetObject', key='^always$', count=None)
    with open(os.path.join(m.path, 'always'), 'rb') as f:
        with pytest.raises(OSError) as e:
            f.read()
    assert e.value.errno == errno.EIO
    proxy.clear_faults()
    assert read_file(os.path.join(m.path, 'always')) == data


@pytest.mark.timeout(300)
def test_server_down_for_30_s_during_writes(mount, bucket, s3, proxy):
    """The writer blocks while the server is away (server_wait, default 60 s) and then
    succeeds: creates, writes, closes and an fsync all return 0, the fsync only once its
    upload is in S3; nothing is visible half-written."""
    m = mount(bucket)
    os.listdir(m.path)
    proxy.down()
    threading.Timer(30, proxy.up).start()
    t0 = time.monotonic()
    data = {}
    for i in range(5):
        data[f'f{i}'] = os.urandom(100_000 + i)
        with open(os.path.join(m.path, f'f{i}'), 'wb') as f:
            f.write(data[f'f{i}'])
            if i == 4:
                f.flush()
                os.fsync(f.fileno())
    took = time.monotonic() - t0
    assert took >= 29, f'the calls returned after {took:.1f} s, while the server was away'
    assert s3_body(s3, bucket, 'f4') == data['f4'], 'fsync returned before its upload'
    assert wait_until(lambda: set(data) <= s3_keys(s3, bucket), 60), \
        f'missing in S3 after the server came back: {set(data) - s3_keys(s3, bucket)}'
    for name, body in data.items():
        assert s3_body(s3, bucket, name) == body
    assert 'waiting up to 60 s' in m.log_text()
    m.unmount()


def test_server_away_longer_than_server_wait_fails_clearly(mount, bucket, s3, proxy):
    """Past server_wait an fsync fails with EIO (close() in write-back mode has put the data
    in the journal already); the data reaches S3 once the server is back."""
    m = mount(bucket, opts=['server_wait=2', 'consistency=writeback'])
    os.listdir(m.path)
    proxy.down()
    t0 = time.monotonic()
    fd = os.open(os.path.join(m.path, 'new'), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b'kept')
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO, e.value
    finally:
        os.close(fd)
    assert 2 <= time.monotonic() - t0 < 20
    assert 'waiting up to 2 s' in m.log_text()
    proxy.up()
    m.unmount()
    assert s3_body(s3, bucket, 'new') == b'kept'


def test_server_away_longer_than_server_wait_fails_close_to_open_calls(mount, bucket, s3, proxy):
    """With close-to-open, a call that must reach S3 fails with EIO past server_wait: the
    lookup of a new name, a close whose upload cannot start, a mkdir; nothing is left half
    done, and what close() put in the journal reaches S3 once the server is back."""
    m = mount(bucket, opts=['server_wait=2'])
    fd = os.open(os.path.join(m.path, 'new'), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b'kept')
    proxy.down()
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.EIO, e.value
    assert 2 <= time.monotonic() - t0 < 20
    with pytest.raises(OSError) as e:   # its lookup, or its PUT, finds no server
        os.mkdir(os.path.join(m.path, 'd'))
    assert e.value.errno in (errno.EIO, errno.EHOSTUNREACH), e.value
    with pytest.raises(OSError) as e:
        os.stat(os.path.join(m.path, 'other'))
    assert e.value.errno in (errno.EIO, errno.EHOSTUNREACH), e.value
    proxy.up()
    assert not os.path.exists(os.path.join(m.path, 'd'))
    m.unmount()
    assert s3_body(s3, bucket, 'new') == b'kept'
    assert s3_head(s3, bucket, 'd/') is None
