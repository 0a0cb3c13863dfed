"""Every write path on an object larger than part_size (a multipart object), on both servers.

Real S3 and Ceph RGW give a multipart object an ETag of the form md5-of-part-md5s-N, and RGW
16 even answers CompleteMultipartUpload with an empty <ETag/>; s3rver hides both. A file
system that mistakes "no ETag known" for "nothing in S3" then writes zeros (the defects these
tests were written for: a truncate or in-place write of a multipart object uploaded zeros).

Each test builds one kind of multipart object (written through the mount, hard-linked, made
by another client with a multipart upload and a CopyObject, renamed), applies every write
path to its own copy, and checks the bytes three ways: through the mount at once, with boto3
after the unmount, and through a fresh mount.
"""
import hashlib
import os
import subprocess
import sys
import time

import pytest

from helpers import read_file, s3_body, s3_head, s3_keys

PART = 5 << 20                       # part_size=5M: the smallest S3 allows
SIZE = PART + (1536 << 10)           # 6.5 MiB: two parts
OPTS = ['part_size=5M']


def rand(n, seed):
    """n reproducible pseudo-random bytes (a different stream per seed)."""
    import random
    return random.Random(seed).randbytes(n)


# ---- the write paths: each takes (path, current bytes) and returns the expected bytes -------

def overwrite_in_place(p, data):
    patch = rand(1 << 20, 'patch')
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, patch, PART + 4096)       # in the second part
        os.pwrite(fd, patch[:4096], 100)        # and in the first
    finally:
        os.close(fd)
    out = bytearray(data)
    out[PART + 4096:PART + 4096 + len(patch)] = patch
    out[100:100 + 4096] = patch[:4096]
    return bytes(out)


def append(p, data):
    tail = rand(300 << 10, 'tail')
    with open(p, 'ab') as f:
        f.write(tail)
    return data + tail


def truncate_down(p, data):
    os.truncate(p, PART - 12345)
    return data[:PART - 12345]


def truncate_up(p, data):
    os.truncate(p, SIZE + (2 << 20))
    return data + bytes(2 << 20)


def truncate_same(p, data):
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return data


def write_fsync_truncate_same(p, data):
    """The exerciser's recipe: write at 0, fsync, ftruncate to the same size, close."""
    patch = rand(1 << 20, 'fsync-patch')
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, patch, 0)
        os.fsync(fd)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return patch + data[len(patch):]


def truncate_while_uploading(p, data):
    """Close (the upload starts), reopen at once and truncate while it may still run."""
    patch = rand(64 << 10, 'busy')
    with open(p, 'r+b') as f:
        f.seek(PART + 1)
        f.write(patch)
    fd = os.open(p, os.O_RDWR)
    try:
        os.ftruncate(fd, PART + 7)
    finally:
        os.close(fd)
    out = bytearray(data)
    out[PART + 1:PART + 1 + len(patch)] = patch
    return bytes(out[:PART + 7])


def o_trunc_rewrite(p, data):
    new = rand(SIZE - 999, 'rewrite')
    with open(p, 'wb') as f:
        f.write(new)
    return new


MMAP_WRITER = """
import mmap, sys
path, off, patch = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
with open(path, 'r+b') as f:
    with mmap.mmap(f.fileno(), 0) as mm:
        mm[off:off + len(patch)] = patch
        mm.flush()                          # msync(MS_SYNC): bucketfs uploads
"""


def mmap_msync(p, data):
    """In another process: CPython's mmap.flush() holds the GIL through msync(), which here
    waits for the upload, which goes through the audit proxy running in this process."""
    patch = rand(8192, 'mmap')
    subprocess.run([sys.executable, '-c', MMAP_WRITER, p, str(PART - 4096), patch.hex()],
                   check=True, timeout=120)
    out = bytearray(data)
    out[PART - 4096:PART + 4096] = patch
    return bytes(out)


PATHS = [overwrite_in_place, append, truncate_down, truncate_up, truncate_same,
         write_fsync_truncate_same, truncate_while_uploading, o_trunc_rewrite, mmap_msync]


# ---- the kinds of multipart object -----------------------------------------------------------

def make_plain(m, s3, bucket, name, data):
    with open(f'{m.path}/{name}', 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return name, [name]


def make_linked(m, s3, bucket, name, data):
    make_plain(m, s3, bucket, name, data)
    os.link(f'{m.path}/{name}', f'{m.path}/{name}.link')
    return name, [name, f'{name}.link']


def make_copied(m, s3, bucket, name, data):
    """Another client's multipart upload, then a server-side copy of it (RGW keeps the -N)."""
    src = f'src-{name}'
    up = s3.create_multipart_upload(Bucket=bucket, Key=src,
                                    Metadata={'mode': str(0o100644)})['UploadId']
    parts = []
    for i, off in enumerate(range(0, len(data), PART)):
        e = s3.upload_part(Bucket=bucket, Key=src, UploadId=up, PartNumber=i + 1,
                           Body=data[off:off + PART])['ETag']
        parts.append({'ETag': e, 'PartNumber': i + 1})
    s3.complete_multipart_upload(Bucket=bucket, Key=src, UploadId=up,
                                 MultipartUpload={'Parts': parts})
    s3.copy_object(Bucket=bucket, Key=name, CopySource={'Bucket': bucket, 'Key': src})
    s3.delete_object(Bucket=bucket, Key=src)
    assert '-' in s3_head(s3, bucket, name)['ETag'] or not _server_keeps_multipart_etags(s3)
    return name, [name]


def make_renamed(m, s3, bucket, name, data):
    make_plain(m, s3, bucket, f'old-{name}', data)
    os.rename(f'{m.path}/old-{name}', f'{m.path}/{name}')
    return name, [name]


def _server_keeps_multipart_etags(s3):
    import conftest
    return conftest.on_rgw


KINDS = {'plain': make_plain, 'linked': make_linked, 'copied': make_copied,
         'renamed': make_renamed}


@pytest.mark.timeout(600)
@pytest.mark.parametrize('kind', sorted(KINDS))
def test_every_write_path_on_a_multipart_object(kind, mount, bucket, s3):
    m = mount(bucket, opts=OPTS)
    want = {}           # name -> expected bytes
    for i, path_fn in enumerate(PATHS):
        base = rand(SIZE, f'{kind}-{i}')
        name, names = KINDS[kind](m, s3, bucket, f'{path_fn.__name__}', base)
        expect = path_fn(f'{m.path}/{name}', base)
        for n in names:
            got = read_file(f'{m.path}/{n}')
            assert got == expect, (f'{kind}/{path_fn.__name__}: {n} reads wrong through the '
                                   f'mount ({len(got)} bytes, {got.count(0)} zero bytes; '
                                   f'expected {len(expect)})')
            want[n] = expect
    m.unmount()
    if kind == 'linked':
        # the names are pointers; each file's content is one object under .bucketfs/inodes/
        bodies = sorted(hashlib.sha256(s3_body(s3, bucket, k)).hexdigest()
                        for k in s3_keys(s3, bucket, '.bucketfs/inodes/'))
        assert bodies == sorted({hashlib.sha256(v).hexdigest() for v in want.values()}), \
            'the content objects in S3 are not the bytes written'
    else:
        for n, expect in want.items():
            got = s3_body(s3, bucket, n)
            assert got == expect, f'{kind}: {n} wrong in S3 ({got.count(0)} zero bytes)'
    m2 = mount(bucket, opts=OPTS)
    for n, expect in want.items():
        got = read_file(f'{m2.path}/{n}')
        assert got == expect, f'{kind}: {n} wrong after remount ({got.count(0)} zero bytes)'


def test_fsync_truncate_same_size_keeps_data(mount, bucket, s3):
    """The exact recipe of the loss on RGW: O_TRUNC create, 16 MiB, fsync, ftruncate(16 MiB)."""
    m = mount(bucket, opts=OPTS)
    data = rand(16 << 20, 'recipe')
    p = f'{m.path}/f'
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        os.ftruncate(fd, 16 << 20)
    finally:
        os.close(fd)
    assert read_file(p) == data, 'reread after ftruncate is not the data written'
    m.unmount()
    assert s3_body(s3, bucket, 'f') == data
    head = s3_head(s3, bucket, 'f')
    assert head['ContentLength'] == 16 << 20


def test_reopen_during_upload_and_truncate(mount, bucket, s3):
    """Write 16 MiB, close, reopen 0.7 s later (the upload runs) and truncate to 12 MiB."""
    m = mount(bucket, opts=OPTS + ['upload_delay=0.1'])
    data = rand(16 << 20, 'reopen')
    p = f'{m.path}/g'
    with open(p, 'wb') as f:
        f.write(data)
    time.sleep(0.7)
    os.truncate(p, 12 << 20)
    assert read_file(p) == data[:12 << 20]
    m.unmount()
    assert s3_body(s3, bucket, 'g') == data[:12 << 20]


def test_writes_during_an_upload_do_not_mix_into_it(mount, bucket, s3, proxy):
    """A file is written again through a second descriptor while the close of the first
    uploads it (parts two at a time, each delayed). The upload running then sends the
    version that was closed, whole: its later parts are not read from the changed bytes
    (an object whose parts mixed two versions, with digests of neither). The second close
    then uploads the new version."""
    m = mount(bucket, opts=OPTS + ['parallel=2'])
    p = f'{m.path}/f'
    data = rand(11 << 20, 'during')           # three parts, the last one read last
    slow = proxy.fault('delay', op='UploadPart', count=None, seconds=0.4)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    import threading
    closed = threading.Thread(target=os.close, args=(fd,))
    closed.start()                              # the upload of `data` runs in this close
    deadline = time.time() + 20
    while slow.hits == 0 and time.time() < deadline:
        time.sleep(0.01)
    assert slow.hits > 0, 'no part upload seen'
    fd2 = os.open(p, os.O_WRONLY)
    os.pwrite(fd2, b'X' * 65536, (10 << 20) + 512 * 1024)   # in the last part
    os.pwrite(fd2, b'Y' * 100, 0)
    closed.join(60)
    assert not closed.is_alive()
    assert slow.hits >= 3
    assert s3_body(s3, bucket, 'f') == data, 'the upload mixed in bytes written after its close'
    os.close(fd2)
    want = bytearray(data)
    want[(10 << 20) + 512 * 1024:(10 << 20) + 512 * 1024 + 65536] = b'X' * 65536
    want[0:100] = b'Y' * 100
    proxy.clear_faults()
    assert read_file(p) == bytes(want)
    m.unmount()
    assert s3_body(s3, bucket, 'f') == bytes(want)
    m.remount()
    assert read_file(p) == bytes(want)                      # its digests match it
