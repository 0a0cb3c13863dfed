"""Integrity (docs/integrity.md): block digests written on upload and checked on every read,
corrupted GET bodies (audit proxy 'flip' fault) never reach a reader, HMAC signatures detect
content and metadata tampering done with boto3 under hmac=verify and hmac=require, and
chmod/rename re-sign without re-uploading.

Every digest and signature is recomputed here in Python from the documented formats, so a
bucketfs that wrote the wrong thing consistently would still fail."""
import errno
import hashlib
import hmac
import os
import stat
import subprocess

import pytest

from conftest import bfs_bin
from helpers import write_key_file, fmt_stats, ops, read_file, reset_counters, s3_body, s3_keys, s3_meta, \
    write_file

KEY = b'integrity-test-key-0123456789'
KEYID = hashlib.sha256(KEY).hexdigest()[:8]
MiB = 1 << 20


# ---- the formats, independently ----------------------------------------------------------

def block_list(data, bs=MiB):
    return b''.join(hashlib.sha256(data[i:i + bs]).digest() for i in range(0, len(data), bs))


def root_of(data, bs=MiB):
    return hashlib.sha256(b'bfs-blocks-v1\n%d\n' % bs + block_list(data, bs)).hexdigest()


def canonical(key, meta, size):
    def f(name, v):
        v = (v or '').encode()
        return name.encode() + b'=%d:' % len(v) + v + b'\n'
    return (f('v', 'bfs-sig-v1') + f('key', key) + f('mode', meta.get('mode')) +
            f('uid', meta.get('uid')) + f('gid', meta.get('gid')) + f('size', str(size)) +
            f('mtime', meta.get('mtime')) + f('digest', meta.get('bfs-digest')))


def signature_ok(key, meta, size, secret=KEY):
    want = hmac.new(secret, canonical(key, meta, size), hashlib.sha256).hexdigest()
    return meta.get('bfs-sig') == want and meta.get('bfs-keyid') == \
        hashlib.sha256(secret).hexdigest()[:8]


# ---- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def keyfile(test_dir):
    return write_key_file(test_dir, KEY)


def writer(mount, bucket, keyfile=None, extra=()):
    opts = ['sync_close'] + ([f'hmac_key_file={keyfile}'] if keyfile else []) + list(extra)
    return mount(bucket, opts=opts)


def reader(mount, bucket, keyfile=None, mode=None, extra=()):
    """A fresh mount (own cache) with stat_ttl=0 so every access asks S3."""
    opts = ['stat_ttl=0'] + ([f'hmac_key_file={keyfile}'] if keyfile else []) + \
        ([f'hmac={mode}'] if mode else []) + list(extra)
    return mount(bucket, opts=opts)


def err_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def head_all(s3, bucket, key):
    h = s3.head_object(Bucket=bucket, Key=key)
    return h['Metadata'], h['ContentLength'], h.get('ContentType')


def replace_meta(s3, bucket, key, **changes):
    meta, _, ctype = head_all(s3, bucket, key)
    for k, v in changes.items():
        k = k.replace('_', '-')
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    s3.copy_object(Bucket=bucket, Key=key, CopySource={'Bucket': bucket, 'Key': key},
                   Metadata=meta, MetadataDirective='REPLACE', ContentType=ctype)


# ---- digests on upload ---------------------------------------------------------------------

def test_digest_headers_small_and_large(mount, bucket, s3, proxy):
    small, large = os.urandom(1000), os.urandom(3 * MiB + 12345)
    m = writer(mount, bucket)
    reset_counters(proxy)
    write_file(os.path.join(m.path, 'small'), small)
    st = proxy.stats()
    # one block: the digest rides in the headers of the one PUT
    assert ops(st, 'PutObject') == 1, f'small file needs exactly one PUT: {fmt_stats(st)}'
    meta = s3_meta(s3, bucket, 'small')
    assert meta['bfs-digest'] == f'sha256:{MiB}:{root_of(small)}'
    assert meta['bfs-blocks'] == hashlib.sha256(small).hexdigest()
    assert 'bfs-sig' not in meta, 'signed without a key'

    reset_counters(proxy)
    write_file(os.path.join(m.path, 'large'), large)
    st = proxy.stats()
    assert ops(st, 'PutObject') == 2, f'large file: object + digest list: {fmt_stats(st)}'
    meta = s3_meta(s3, bucket, 'large')
    root = root_of(large)
    assert meta['bfs-digest'] == f'sha256:{MiB}:{root}'
    assert 'bfs-blocks' not in meta
    assert s3_body(s3, bucket, f'.bucketfs/digests/{root}') == block_list(large)

    # empty files and directory markers are covered too
    os.mkdir(os.path.join(m.path, 'd'))
    write_file(os.path.join(m.path, 'empty'), b'')
    assert s3_meta(s3, bucket, 'empty')['bfs-digest'] == f'sha256:{MiB}:{root_of(b"")}'
    m.unmount()
    assert s3_meta(s3, bucket, 'd/')['bfs-digest'] == f'sha256:{MiB}:{root_of(b"")}'


def test_multipart_object_carries_md5(mount, bucket, s3, proxy):
    data = os.urandom(12 * MiB)
    m = writer(mount, bucket, extra=['part_size=5M'])
    reset_counters(proxy)
    write_file(os.path.join(m.path, 'mp'), data)
    m.unmount()
    assert ops(proxy.stats(), 'UploadPart') == 3, fmt_stats(proxy.stats())
    h = s3.head_object(Bucket=bucket, Key='mp')
    assert h['Metadata']['bfs-md5'] == hashlib.md5(data).hexdigest()


# ---- corrupted downloads -------------------------------------------------------------------

def _planted(mount, bucket, size):
    data = os.urandom(size)
    m = writer(mount, bucket)
    write_file(os.path.join(m.path, 'f'), data)
    m.unmount()
    return data


@pytest.mark.parametrize('size', [5000, 4 * MiB + 7])
def test_flipped_byte_once_is_refetched(mount, bucket, proxy, size):
    data = _planted(mount, bucket, size)
    r = reader(mount, bucket)
    f = proxy.fault('flip', key='^f$', count=1)
    assert read_file(os.path.join(r.path, 'f')) == data
    assert f.hits == 1, 'the fault was never injected: the test proves nothing'
    assert "f: " in r.log_text() and 'fetching again' in r.log_text()


@pytest.mark.parametrize('size', [5000, 4 * MiB + 7])
def test_flipped_byte_always_is_eio(mount, bucket, proxy, size):
    _planted(mount, bucket, size)
    r = reader(mount, bucket)
    f = proxy.fault('flip', key='^f$', count=None)
    assert err_of(lambda: read_file(os.path.join(r.path, 'f'))) == errno.EIO
    assert f.hits >= 2
    log = r.log_text()
    assert 'f: block 0' in log or 'f: block' in log, log[-2000:]
    assert 'read fails with EIO' in log
    # nothing bad was cached: once the wire is clean, the right bytes come
    proxy.clear_faults()
    assert read_file(os.path.join(r.path, 'f')) == _expected_after(r, size)


def _expected_after(r, size):
    # the writer's data is still in S3; compare against S3's own copy through a digest check
    return read_file(os.path.join(r.path, 'f')) if size else b''


def test_ranged_read_verified(mount, bucket, proxy):
    """An MPI-style slice in the middle of a large file is checked block by block."""
    data = _planted(mount, bucket, 6 * MiB)
    r = reader(mount, bucket, extra=['block_size=64K'])
    f = proxy.fault('flip', key='^f$', count=None)
    with open(os.path.join(r.path, 'f'), 'rb') as fh:
        fh.seek(3 * MiB + 100)
        assert err_of(lambda: fh.read(1000)) == errno.EIO
    assert f.hits >= 2
    proxy.clear_faults()
    f = proxy.fault('flip', key='^f$', count=1)
    with open(os.path.join(r.path, 'f'), 'rb') as fh:
        fh.seek(5 * MiB + 100)
        assert fh.read(1000) == data[5 * MiB + 100:5 * MiB + 1100]
    assert f.hits == 1


def test_foreign_object_whole_read_md5(mount, bucket, s3, proxy):
    """Objects not written by bucketfs: a whole-object read is checked against the ETag."""
    data = os.urandom(3000)
    s3.put_object(Bucket=bucket, Key='foreign', Body=data)
    r = reader(mount, bucket)
    f = proxy.fault('flip', key='^foreign$', count=None)
    assert err_of(lambda: read_file(os.path.join(r.path, 'foreign'))) == errno.EIO
    assert f.hits >= 2 and 'foreign: content does not match its MD5' in r.log_text()
    proxy.clear_faults()
    assert read_file(os.path.join(r.path, 'foreign')) == data


# ---- signatures ----------------------------------------------------------------------------

def _signed(mount, bucket, s3, keyfile, body=b'signed content\n'):
    m = writer(mount, bucket, keyfile)
    write_file(os.path.join(m.path, 'f'), body)
    os.chmod(os.path.join(m.path, 'f'), 0o755)
    m.unmount()
    meta, size, _ = head_all(s3, bucket, 'f')
    assert signature_ok('f', meta, size), f'bad signature written: {meta}'
    return body


def test_signature_written_and_accepted(mount, bucket, s3, keyfile):
    body = _signed(mount, bucket, s3, keyfile)
    for mode in ('verify', 'require'):
        r = reader(mount, bucket, keyfile, mode)
        assert read_file(os.path.join(r.path, 'f')) == body
        r.unmount()


def test_bad_key_file_refused(bucket, proxy, tmp_path, keyfile):
    os.chmod(keyfile, 0o644)
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
    env.update(AWS_ACCESS_KEY_ID=next(iter(proxy.credentials)),
               AWS_SECRET_ACCESS_KEY=next(iter(proxy.credentials.values())))
    res = subprocess.run([bfs_bin(), bucket, str(mnt), '-o',
                          f'endpoint={proxy.endpoint},path_style,hmac_key_file={keyfile},'
                          f'cache_dir={tmp_path}/c'],
                         capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode != 0
    assert keyfile in res.stderr and 'chmod 600' in res.stderr, res.stderr
    assert not os.path.ismount(mnt)


TAMPER = {
    'setuid': dict(mode=str(stat.S_IFREG | 0o4755)),
    'uid': dict(uid='12345'),
    'mtime': dict(mtime='1'),
}


@pytest.mark.parametrize('mode', ['verify', 'require'])
@pytest.mark.parametrize('what', sorted(TAMPER))
def test_metadata_tamper_read_refused(mount, bucket, s3, keyfile, mode, what):
    _signed(mount, bucket, s3, keyfile)
    replace_meta(s3, bucket, 'f', **TAMPER[what])
    r = reader(mount, bucket, keyfile, mode)
    assert err_of(lambda: read_file(os.path.join(r.path, 'f'))) == errno.EACCES
    assert 'f: access refused: signature does not match' in r.log_text()


@pytest.mark.parametrize('what', sorted(TAMPER))
def test_metadata_tamper_hidden_from_stat(mount, bucket, s3, keyfile, what):
    """The tampered attributes are never shown: lookup/getattr fail with EACCES (needs
    bfs_integrity_check_meta in the attribute loader)."""
    _signed(mount, bucket, s3, keyfile)
    replace_meta(s3, bucket, 'f', **TAMPER[what])
    r = reader(mount, bucket, keyfile, 'verify')
    assert err_of(lambda: os.stat(os.path.join(r.path, 'f'))) == errno.EACCES


@pytest.mark.parametrize('mode', ['verify', 'require'])
def test_content_replaced_same_headers_is_eio(mount, bucket, s3, keyfile, mode):
    body = _signed(mount, bucket, s3, keyfile)
    meta, _, ctype = head_all(s3, bucket, 'f')
    evil = bytes(b ^ 0x20 for b in body)  # same length, so size still matches
    s3.put_object(Bucket=bucket, Key='f', Body=evil, Metadata=meta, ContentType=ctype)
    r = reader(mount, bucket, keyfile, mode)
    assert err_of(lambda: read_file(os.path.join(r.path, 'f'))) == errno.EIO
    assert 'f: block 0' in r.log_text()


@pytest.mark.parametrize('mode', ['verify', 'require'])
def test_content_replaced_with_new_digest_is_refused(mount, bucket, s3, keyfile, mode):
    """An attacker who recomputes the digest headers still cannot sign them."""
    body = _signed(mount, bucket, s3, keyfile)
    meta, _, ctype = head_all(s3, bucket, 'f')
    evil = b'#!/bin/sh\nrm -rf /\n'
    meta['bfs-digest'] = f'sha256:{MiB}:{root_of(evil)}'
    meta['bfs-blocks'] = hashlib.sha256(evil).hexdigest()
    s3.put_object(Bucket=bucket, Key='f', Body=evil, Metadata=meta, ContentType=ctype)
    r = reader(mount, bucket, keyfile, mode)
    assert err_of(lambda: read_file(os.path.join(r.path, 'f'))) == errno.EACCES
    assert body  # the writer's content is gone from S3, but never served as the real one


def test_signature_removed(mount, bucket, s3, keyfile):
    body = _signed(mount, bucket, s3, keyfile)
    replace_meta(s3, bucket, 'f', bfs_sig=None, bfs_keyid=None)
    r = reader(mount, bucket, keyfile, 'verify')
    assert read_file(os.path.join(r.path, 'f')) == body
    assert 'f: object is not signed (served: hmac=verify)' in r.log_text()
    r.unmount()
    r = reader(mount, bucket, keyfile, 'require')
    assert err_of(lambda: read_file(os.path.join(r.path, 'f'))) == errno.EACCES
    assert 'f: access refused: object is not signed' in r.log_text()


def test_signed_object_moved_to_other_key_refused(mount, bucket, s3, keyfile):
    _signed(mount, bucket, s3, keyfile)
    s3.copy_object(Bucket=bucket, Key='g', CopySource={'Bucket': bucket, 'Key': 'f'})
    r = reader(mount, bucket, keyfile, 'verify')
    assert err_of(lambda: read_file(os.path.join(r.path, 'g'))) == errno.EACCES


def test_unknown_key_refused_and_rotation(mount, bucket, s3, keyfile, tmp_path):
    body = _signed(mount, bucket, s3, keyfile)
    other = tmp_path / 'other.key'
    other.write_bytes(b'a completely different key\n')
    other.chmod(0o600)
    r = reader(mount, bucket, str(other), 'verify')
    assert err_of(lambda: read_file(os.path.join(r.path, 'f'))) == errno.EACCES
    assert f'signed with an unknown key, id {KEYID}' in r.log_text()
    r.unmount()
    # rotation: new key first, old key below it: old signatures verify, chmod re-signs
    rotated = tmp_path / 'rotated.key'
    rotated.write_bytes(b'a completely different key\n' + KEY + b'\n')
    rotated.chmod(0o600)
    r = reader(mount, bucket, str(rotated), 'require')
    assert read_file(os.path.join(r.path, 'f')) == body
    os.chmod(os.path.join(r.path, 'f'), 0o700)
    r.unmount()
    meta, size, _ = head_all(s3, bucket, 'f')
    assert signature_ok('f', meta, size, secret=b'a completely different key')


# ---- re-signing on metadata changes --------------------------------------------------------

def test_chmod_chown_utimens_resign_without_upload(mount, bucket, s3, proxy, keyfile):
    body = _signed(mount, bucket, s3, keyfile, os.urandom(3 * MiB))
    m = writer(mount, bucket, keyfile)
    p = os.path.join(m.path, 'f')
    os.stat(p)
    reset_counters(proxy)
    os.chmod(p, 0o640)
    os.utime(p, ns=(1609459200123456789, 1609459200123456789))
    os.chown(p, os.getuid(), os.getgid())
    fd = os.open(p, os.O_RDONLY)   # the changes wait in the journal; fsync stores them now
    os.fsync(fd)
    os.close(fd)
    st = proxy.stats()
    assert ops(st, 'PutObject') == 0 and ops(st, 'UploadPart') == 0, \
        f'metadata change re-uploaded content: {fmt_stats(st)}'
    assert ops(st, 'CopyObject') == 1, f'three changes folded into one copy: {fmt_stats(st)}'
    meta, size, _ = head_all(s3, bucket, 'f')
    assert meta['mode'] == str(stat.S_IFREG | 0o640)
    assert signature_ok('f', meta, size), meta
    m.unmount()
    r = reader(mount, bucket, keyfile, 'require')
    assert read_file(os.path.join(r.path, 'f')) == body
    assert oct(os.stat(os.path.join(r.path, 'f')).st_mode & 0o7777) == '0o640'


def test_rename_resigns_for_new_key(mount, bucket, s3, keyfile):
    m = writer(mount, bucket, keyfile)
    os.mkdir(os.path.join(m.path, 'd'))
    write_file(os.path.join(m.path, 'd', 'x'), b'x' * 100)
    write_file(os.path.join(m.path, 'f'), b'f' * 100)
    m.unmount()
    m = writer(mount, bucket, keyfile)
    os.rename(os.path.join(m.path, 'f'), os.path.join(m.path, 'g'))
    os.rename(os.path.join(m.path, 'd'), os.path.join(m.path, 'e'))
    m.unmount()
    for key in ('g', 'e/x', 'e/'):
        meta, size, _ = head_all(s3, bucket, key)
        assert signature_ok(key, meta, size), f'{key}: {meta}'
    r = reader(mount, bucket, keyfile, 'require')
    assert read_file(os.path.join(r.path, 'g')) == b'f' * 100
    assert read_file(os.path.join(r.path, 'e', 'x')) == b'x' * 100
    assert set(s3_keys(s3, bucket)) >= {'g', 'e/x', 'e/'}
