"""Streaming multipart writes (docs/streaming.md), on both servers.

A file written sequentially past part_size with close-to-open is uploaded while it is being
written: the audit proxy sees its UploadParts (to a private key under .bucketfs/streams/)
before close() is called, and the close sends the tail, completes, and copies the object to
its key with its final metadata in one CopyObject. Every way the stream can go wrong (a write
into a part already sent, a truncate, an unlink, failures of each request of the stream)
must end with the right bytes at the key, or no object, and never an unfinished multipart
upload or a private object left behind.

Digests, MD5 and signatures are recomputed here from the documented formats."""
import hashlib
import hmac
import os
import random

import pytest

import helpers
from helpers import s3_body, s3_head, s3_keys, write_key_file

KEY = b'stream-test-key-0123456789abcdef'
MiB = 1 << 20
PART = 5 * MiB
OPTS = ['part_size=5M']
STREAMS = '.bucketfs/streams/'


def rand(n, seed):
    return random.Random(seed).randbytes(n)


def root_of(data, bs=MiB):
    lst = b''.join(hashlib.sha256(data[i:i + bs]).digest() for i in range(0, len(data), bs))
    return hashlib.sha256(b'bfs-blocks-v1\n%d\n' % bs + lst).hexdigest()


def signature_ok(key, meta, size, secret=KEY):
    def f(name, v):
        v = (v or '').encode()
        return name.encode() + b'=%d:' % len(v) + v + b'\n'
    c = (f('v', 'bfs-sig-v1') + f('key', key) + f('mode', meta.get('mode')) +
         f('uid', meta.get('uid')) + f('gid', meta.get('gid')) + f('size', str(size)) +
         f('mtime', meta.get('mtime')) + f('digest', meta.get('bfs-digest')))
    return meta.get('bfs-sig') == hmac.new(secret, c, hashlib.sha256).hexdigest()


def wait_until(cond, timeout=20.0):
    return helpers.wait_until(cond, timeout)


def stream_parts(proxy):
    """UploadParts the proxy saw to the private stream keys."""
    return [r for r in proxy.requests()
            if r.op == 'UploadPart' and r.key and r.key.startswith(STREAMS)]


def unfinished(s3, bucket):
    return s3.list_multipart_uploads(Bucket=bucket).get('Uploads', [])


def assert_clean(s3, bucket):
    """No unfinished multipart upload and no private stream object (aborts run in the
    background once no part is in flight: give them a moment)."""
    assert wait_until(lambda: not unfinished(s3, bucket)), unfinished(s3, bucket)
    left = [k for k in s3_keys(s3, bucket, side_objects=True) if k.startswith(STREAMS)]
    assert left == []


def write_chunks(fd, data, start, end, chunk=MiB):
    for off in range(start, end, chunk):
        os.pwrite(fd, data[off:min(off + chunk, end)], off)


def open_new(m, name):
    return os.open(os.path.join(m.path, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)


@pytest.fixture
def keyfile(test_dir):
    return write_key_file(test_dir, KEY)


def test_streaming_multipart_starts_before_close(mount, bucket, s3, proxy, keyfile):
    """40 MiB written with part_size=5M: parts are in S3 before close() is called; after
    it the object has the right bytes, mode, mtime, digests, MD5 and signature, its key
    never saw a PUT of data (only the final CopyObject), and a fresh mount with
    hmac=require reads it."""
    m = mount(bucket, opts=OPTS + [f'hmac_key_file={keyfile}'])
    data = rand(40 * MiB + 12345, 'big')
    proxy.reset()
    fd = open_new(m, 'big')
    try:
        write_chunks(fd, data, 0, 30 * MiB)
        # the writer is 30 MiB in: parts 1..5 (25 MiB) are behind it
        assert wait_until(lambda: len(stream_parts(proxy)) >= 5), proxy.stats()
        before_close = len(stream_parts(proxy))
        write_chunks(fd, data, 30 * MiB, len(data))
    finally:
        os.close(fd)
    st = os.stat(os.path.join(m.path, 'big'))
    reqs = proxy.requests()
    parts = [r for r in reqs if r.op == 'UploadPart']
    assert before_close >= 5
    assert len(parts) == 9 and all(r.key.startswith(STREAMS) for r in parts), \
        [(r.op, r.key) for r in reqs]
    on_key = [r.op for r in reqs if r.key == 'big' and r.op not in ('HeadObject',)]
    assert on_key == ['CopyObject'], on_key
    copy = [r for r in reqs if r.op == 'CopyObject'][0]
    assert copy.status == 200

    assert s3_body(s3, bucket, 'big') == data
    h = s3.head_object(Bucket=bucket, Key='big')
    meta = h['Metadata']
    assert h['ContentLength'] == len(data)
    assert int(meta['mode']) & 0o7777 == 0o640 and int(meta['mode']) & 0o170000 == 0o100000
    assert abs(float(meta['mtime']) - st.st_mtime) < 1e-6
    assert meta['bfs-digest'] == 'sha256:1048576:' + root_of(data)
    assert meta['bfs-md5'] == hashlib.md5(data).hexdigest()
    assert signature_ok('big', meta, len(data))
    assert_clean(s3, bucket)
    with open(os.path.join(m.path, 'big'), 'rb') as f:  # the ETag the copy gave, If-Match
        assert f.read() == data
    m.unmount()

    r = mount(bucket, opts=OPTS + [f'hmac_key_file={keyfile}', 'hmac=require', 'stat_ttl=0'])
    with open(os.path.join(r.path, 'big'), 'rb') as f:
        assert f.read() == data


def test_small_and_writeback_files_do_not_stream(mount, bucket, s3, proxy):
    """A file up to part_size is one PUT; with consistency=writeback nothing streams (the
    upload follows the close, folded with later changes)."""
    m = mount(bucket, opts=OPTS)
    proxy.reset()
    with open(os.path.join(m.path, 'small'), 'wb') as f:
        f.write(rand(PART, 's'))
    assert [r.op for r in proxy.requests() if r.key == 'small'] == ['HeadObject', 'PutObject']
    assert not stream_parts(proxy)
    m.unmount()
    w = mount(bucket, opts=OPTS + ['consistency=writeback'])
    proxy.reset()
    data = rand(16 * MiB, 'wb')
    with open(os.path.join(w.path, 'wb'), 'wb') as f:
        f.write(data)
    w.unmount()
    assert not stream_parts(proxy)
    assert s3_body(s3, bucket, 'wb') == data


def test_write_into_a_sent_part_falls_back_to_the_whole_upload(mount, bucket, s3, proxy):
    m = mount(bucket, opts=OPTS)
    data = bytearray(rand(24 * MiB, 'rw'))
    proxy.reset()
    fd = open_new(m, 'f')
    try:
        write_chunks(fd, data, 0, 16 * MiB)
        assert wait_until(lambda: len(stream_parts(proxy)) >= 1)
        patch = rand(4096, 'patch')
        os.pwrite(fd, patch, 100)
        data[100:100 + len(patch)] = patch
        write_chunks(fd, data, 16 * MiB, len(data))
    finally:
        os.close(fd)
    data = bytes(data)
    assert s3_body(s3, bucket, 'f') == data
    # the whole upload went to the key itself
    assert any(r.op == 'CreateMultipartUpload' and r.key == 'f' for r in proxy.requests())
    assert not any(r.op == 'CopyObject' for r in proxy.requests())
    assert_clean(s3, bucket)
    with open(os.path.join(m.path, 'f'), 'rb') as f:
        assert f.read() == data


def test_truncate_mid_stream(mount, bucket, s3, proxy):
    m = mount(bucket, opts=OPTS)
    data = rand(20 * MiB, 'tr')
    proxy.reset()
    fd = open_new(m, 't')
    try:
        write_chunks(fd, data, 0, 16 * MiB)
        assert wait_until(lambda: len(stream_parts(proxy)) >= 1)
        os.ftruncate(fd, 3 * MiB)
        tail = rand(9 * MiB, 'tail')
        write_chunks(fd, b'\0' * (3 * MiB) + tail, 3 * MiB, 12 * MiB)
    finally:
        os.close(fd)
    want = data[:3 * MiB] + tail
    assert s3_body(s3, bucket, 't') == want
    assert_clean(s3, bucket)


def test_unlink_mid_stream(mount, bucket, s3, proxy):
    m = mount(bucket, opts=OPTS)
    data = rand(20 * MiB, 'ul')
    proxy.reset()
    path = os.path.join(m.path, 'gone')
    fd = open_new(m, 'gone')
    try:
        write_chunks(fd, data, 0, 16 * MiB)
        assert wait_until(lambda: len(stream_parts(proxy)) >= 1)
        os.unlink(path)
        write_chunks(fd, data, 16 * MiB, len(data))
    finally:
        os.close(fd)
    assert not os.path.exists(path)
    assert s3_head(s3, bucket, 'gone') is None
    assert_clean(s3, bucket)


def test_fsync_and_rename_mid_stream(mount, bucket, s3, proxy):
    """fsync finishes the stream (the object is whole at that size); later writes stream
    again from the start; a rename while open moves the object; the close leaves the whole
    file at the new name."""
    m = mount(bucket, opts=OPTS)
    data = rand(30 * MiB + 7, 'fs')
    proxy.reset()
    fd = open_new(m, 'a')
    try:
        write_chunks(fd, data, 0, 12 * MiB)
        os.fsync(fd)
        assert s3_body(s3, bucket, 'a') == data[:12 * MiB]
        assert any(r.op == 'CopyObject' and r.key == 'a' for r in proxy.requests())
        write_chunks(fd, data, 12 * MiB, 22 * MiB)
        os.rename(os.path.join(m.path, 'a'), os.path.join(m.path, 'b'))
        write_chunks(fd, data, 22 * MiB, len(data))
    finally:
        os.close(fd)
    assert s3_head(s3, bucket, 'a') is None
    assert s3_body(s3, bucket, 'b') == data
    assert_clean(s3, bucket)
    m.unmount()
    r = mount(bucket, opts=OPTS + ['stat_ttl=0'])
    with open(os.path.join(r.path, 'b'), 'rb') as f:
        assert f.read() == data


@pytest.mark.parametrize('op,key', [
    ('CreateMultipartUpload', STREAMS),
    ('UploadPart', STREAMS),
    ('CompleteMultipartUpload', STREAMS),
    ('CopyObject', '^f$'),
])
def test_stream_failure_falls_back_to_the_whole_upload(mount, bucket, s3, proxy, op, key):
    """Every request of the stream failing for good: close() still succeeds with the whole
    upload, the object is complete and right, nothing is left behind."""
    m = mount(bucket, opts=OPTS + ['server_wait=0'])
    data = rand(22 * MiB + 3, 'ff')
    proxy.reset()
    fault = proxy.fault('error', op=op, key=key, count=None, status=400, code='InvalidRequest')
    fd = open_new(m, 'f')
    try:
        write_chunks(fd, data, 0, len(data))
    finally:
        os.close(fd)
    assert fault.hits >= 1
    proxy.clear_faults()
    assert s3_body(s3, bucket, 'f') == data
    h = s3.head_object(Bucket=bucket, Key='f')
    assert h['Metadata']['bfs-digest'] == 'sha256:1048576:' + root_of(data)
    assert_clean(s3, bucket)


def test_server_failure_mid_stream_is_retried_or_reported(mount, bucket, s3, proxy):
    """The server fails every UploadPart while the file is written and until after the
    close: close() reports EIO, no partial object is ever at the key, nothing unfinished is
    left; once the server is back the background retry stores the whole file."""
    m = mount(bucket, opts=OPTS + ['server_wait=0'])
    data = rand(16 * MiB, 'sf')
    proxy.reset()
    proxy.fault('error', op='UploadPart', count=None, status=500)
    fd = open_new(m, 'f')
    err = None
    try:
        write_chunks(fd, data, 0, len(data))
    finally:
        try:
            os.close(fd)
        except OSError as e:
            err = e
    assert err is not None, 'close() succeeded though no part could be stored'
    assert s3_head(s3, bucket, 'f') is None
    proxy.clear_faults()
    assert wait_until(lambda: s3_head(s3, bucket, 'f') is not None, timeout=30)
    assert s3_body(s3, bucket, 'f') == data
    assert_clean(s3, bucket)


def test_hard_link_mid_stream(mount, bucket, s3, proxy):
    """link() of the file being streamed: the stream is finished first (the content object
    is made from the object), the rest is uploaded whole at close to the shared content;
    both names read the whole file, here and on a fresh mount."""
    m = mount(bucket, opts=OPTS)
    data = rand(20 * MiB + 99, 'hl')
    proxy.reset()
    fd = open_new(m, 'a')
    try:
        write_chunks(fd, data, 0, 12 * MiB)
        assert wait_until(lambda: len(stream_parts(proxy)) >= 1)
        os.link(os.path.join(m.path, 'a'), os.path.join(m.path, 'b'))
        write_chunks(fd, data, 12 * MiB, len(data))
    finally:
        os.close(fd)
    for name in ('a', 'b'):
        with open(os.path.join(m.path, name), 'rb') as f:
            assert f.read() == data
    assert_clean(s3, bucket)
    m.unmount()
    r = mount(bucket, opts=OPTS + ['stat_ttl=0'])
    for name in ('a', 'b'):
        with open(os.path.join(r.path, name), 'rb') as f:
            assert f.read() == data
    assert os.stat(os.path.join(r.path, 'a')).st_nlink == 2


def test_streamed_file_has_its_headers(mount, bucket, s3, proxy):
    """The final CopyObject of a streamed file carries its S3 headers: a new page.html gets
    text/html from /etc/mime.types, and a header set with setxattr stays when the file is
    rewritten (O_TRUNC, then streamed again)."""
    m = mount(bucket, opts=OPTS)
    data = rand(12 * MiB + 7, 'page')
    proxy.reset()
    fd = open_new(m, 'page.html')
    try:
        write_chunks(fd, data, 0, len(data))
    finally:
        os.close(fd)
    assert len(stream_parts(proxy)) >= 1, proxy.stats()  # it did stream
    h = s3.head_object(Bucket=bucket, Key='page.html')
    assert h['ContentType'] == 'text/html'
    p = os.path.join(m.path, 'page.html')
    os.setxattr(p, 'user.s3.cache_control', b'max-age=60')
    os.setxattr(p, 'user.s3.content_encoding', b'identity')
    data2 = rand(11 * MiB, 'page2')
    proxy.reset()
    fd = open_new(m, 'page.html')
    try:
        write_chunks(fd, data2, 0, len(data2))
    finally:
        os.close(fd)
    assert len(stream_parts(proxy)) >= 1, proxy.stats()
    assert s3_body(s3, bucket, 'page.html') == data2
    h = s3.head_object(Bucket=bucket, Key='page.html')
    assert (h['ContentType'], h.get('CacheControl'), h.get('ContentEncoding')) == \
        ('text/html', 'max-age=60', 'identity')
    assert os.getxattr(p, 'user.s3.cache_control') == b'max-age=60'
    assert_clean(s3, bucket)
