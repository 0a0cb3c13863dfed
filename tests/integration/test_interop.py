"""Interoperability with s3fs-fuse 1.90 on the same bucket: what one writes, the other shows with
the same owner, mode, mtime, size, contents and symlink targets."""
import base64
import json
import os
import stat
import urllib.parse

from helpers import decode_xattrs, put_s3fs_object, read_file, s3_body, s3_keys, s3_meta, write_file

T0 = 1650000000_000000000


def build_tree(root):
    """Files, dirs, symlinks with owners, modes and nanosecond times; returns the relative paths."""
    os.mkdir(os.path.join(root, 'd'))
    os.mkdir(os.path.join(root, 'd', 'sub'))
    files = [('f', 0o640, 1000, 1001, b'plain file\n' * 50), ('e', 0o600, 0, 0, b''),
             ('d/inner', 0o755, 1001, 1000, b'#!/bin/sh\necho hi\n'),
             ('d/sub/sp ace ü', 0o644, 1000, 1000, b'awkward name'),
             ('suid', 0o4755, 0, 0, b'x')]
    for i, (p, mode, uid, gid, body) in enumerate(files):
        full = os.path.join(root, p)
        write_file(full, body)
        os.chown(full, uid, gid)
        os.chmod(full, mode)
        os.utime(full, ns=(T0, T0 + i * 1000000000 + 123456789))
    os.symlink('d/inner', os.path.join(root, 'l'))
    os.lchown(os.path.join(root, 'l'), 1000, 1000)
    for i, (p, mode, uid) in enumerate((('d/sub', 0o700, 1001), ('d', 0o750, 1000))):
        full = os.path.join(root, p)
        os.chown(full, uid, uid)
        os.chmod(full, mode)
        os.utime(full, ns=(T0, T0 + 500000000 + i))
    return [p for p, *_ in files] + ['l', 'd', 'd/sub']


def snapshot(root, paths):
    """What a client shows: lstat essentials, and contents / targets."""
    out = {}
    for p in paths:
        full = os.path.join(root, p)
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            content = os.readlink(full)
        elif stat.S_ISREG(st.st_mode):
            content = read_file(full)
        else:
            content = sorted(os.listdir(full))
        out[p] = {'mode': oct(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid,
                  'size': st.st_size if stat.S_ISREG(st.st_mode) else None,
                  'mtime_ns': st.st_mtime_ns if not stat.S_ISLNK(st.st_mode) else None,
                  'content': content}
    return out


def diff(a, b, a_name, b_name):
    lines = []
    for p in sorted(set(a) | set(b)):
        for k in sorted(set(a.get(p, {})) | set(b.get(p, {}))):
            va, vb = a.get(p, {}).get(k), b.get(p, {}).get(k)
            if va != vb:
                lines.append(f'{p} {k}: {a_name} {va!r:.80} / {b_name} {vb!r:.80}')
    return lines


def test_s3fs_writes_bucketfs_reads(peer_mount, mount, bucket, s3):
    peer = peer_mount(bucket)
    paths = build_tree(peer.path)
    peer.unmount()
    peer.remount()  # the reference: what s3fs itself shows from the bucket
    ref = snapshot(peer.path, paths)
    peer.unmount()
    # the reference keeps what was set, at least to the second (else the test proves nothing)
    assert ref['f']['mode'] == oct(stat.S_IFREG | 0o640) and (ref['f']['uid'], ref['f']['gid']) == (1000, 1001)
    assert ref['f']['mtime_ns'] // 10**9 == (T0 + 123456789) // 10**9
    assert ref['d']['mode'] == oct(stat.S_IFDIR | 0o750) and ref['l']['content'] == 'd/inner'
    assert {'f', 'e', 'l', 'suid', 'd/', 'd/inner', 'd/sub/', 'd/sub/sp ace ü'} <= s3_keys(s3, bucket)

    m = mount(bucket)
    got = snapshot(m.path, paths)
    d = diff(ref, got, 's3fs', 'bucketfs')
    assert not d, 'bucketfs shows s3fs-written objects differently:\n' + '\n'.join(d)
    # bucketfs can modify them and s3fs still agrees
    write_file(os.path.join(m.path, 'd', 'inner'), b'rewritten by bucketfs', 'ab')
    os.chmod(os.path.join(m.path, 'f'), 0o604)
    m.unmount()
    assert s3_body(s3, bucket, 'd/inner') == b'#!/bin/sh\necho hi\nrewritten by bucketfs'
    peer.remount()
    st = os.lstat(os.path.join(peer.path, 'f'))
    assert (st.st_mode, st.st_uid) == (stat.S_IFREG | 0o604, 1000), 'chmod by bucketfs not seen by s3fs'
    assert read_file(os.path.join(peer.path, 'd', 'inner')) == b'#!/bin/sh\necho hi\nrewritten by bucketfs'
    assert os.lstat(os.path.join(peer.path, 'd', 'inner')).st_uid == 1001


def test_bucketfs_writes_s3fs_reads(peer_mount, mount, bucket, s3):
    m = mount(bucket)
    paths = build_tree(m.path)
    m.unmount()
    m.remount()
    ref = snapshot(m.path, paths)
    m.unmount()
    assert ref['d/inner']['mode'] == oct(stat.S_IFREG | 0o755) and ref['d/inner']['uid'] == 1001
    assert ref['f']['mtime_ns'] == T0 + 123456789, 'bucketfs lost nanoseconds'
    assert s3_body(s3, bucket, 'l') == b'd/inner'

    peer = peer_mount(bucket)
    got = snapshot(peer.path, paths)
    peer.unmount()
    # s3fs shows times with the precision it keeps: compare there, and exactly when it has ns
    for p, v in got.items():
        if v['mtime_ns'] is not None and v['mtime_ns'] % 10**9 == 0 and ref[p]['mtime_ns'] % 10**9:
            v['mtime_ns'] = ref[p]['mtime_ns'] // 10**9 * 10**9
            ref[p]['mtime_ns'] = v['mtime_ns']
    d = diff(ref, got, 'bucketfs', 's3fs')
    assert not d, 's3fs shows bucketfs-written objects differently:\n' + '\n'.join(d)


def encode_xattrs(attrs):
    doc = json.dumps({k: base64.b64encode(v).decode() for k, v in attrs.items()}, separators=(',', ':'))
    return urllib.parse.quote(doc, safe='')


def test_s3fs_xattr_encoding(mount, bucket, s3):
    """x-amz-meta-xattr as s3fs writes it is read, and written back in the same encoding."""
    attrs = {'user.one': b'1', 'user.bin': bytes(range(0, 256, 5)), 'user.empty': b''}
    put_s3fs_object(s3, bucket, 'x', b'body', extra={'xattr': encode_xattrs(attrs)})
    m = mount(bucket)
    p = os.path.join(m.path, 'x')
    assert sorted(os.listxattr(p)) == sorted(attrs)
    for k, v in attrs.items():
        assert os.getxattr(p, k) == v, k
    os.setxattr(p, 'user.added', b'new value')
    m.unmount()
    want = dict(attrs, **{'user.added': b'new value'})
    assert decode_xattrs(s3_meta(s3, bucket, 'x')) == want
    assert s3_body(s3, bucket, 'x') == b'body'
