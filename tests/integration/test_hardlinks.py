"""Hard links (fs/ops_link.c, docs/hardlinks.md) and rsync --link-dest backups (issue 5).

A linked file's data and attributes live in one content object .bucketfs/inodes/<24 hex> whose
x-amz-meta-bfs-nlink counts its names; every name is an empty object whose x-amz-meta-bfs-link
holds that key. Each test checks the mount (stat, read, listings) and the bucket (boto3, direct
to the server): the content object, its link count, the name objects, and that nothing is left
behind. Request costs are taken from the audit proxy in front of the server.
"""
import concurrent.futures
import errno
import hashlib
import os
import random
import re
import stat
import subprocess
import time

import pytest

from helpers import (fmt_stats, read_file, reset_counters, s3_body, s3_head, s3_keys, s3_meta,
                     sha256_file, wait_until, write_file)

INODES = '.bucketfs/inodes/'
LINK_META = 'bfs-link'
NLINK_META = 'bfs-nlink'
BASE_NS = 1650000000_000000000
MiB = 1 << 20


# ---- bucket side ---------------------------------------------------------------------------

def content_keys(s3, bucket, prefix=''):
    return sorted(s3_keys(s3, bucket, prefix + INODES))


def the_content_key(s3, bucket, prefix=''):
    keys = content_keys(s3, bucket, prefix)
    assert len(keys) == 1, f'expected exactly one content object under {prefix + INODES}, found {keys}'
    assert re.fullmatch(re.escape(prefix + INODES) + r'[0-9a-f]{24}', keys[0]), f'content key {keys[0]!r}'
    return keys[0]


def nlink_of(s3, bucket, content_key):
    meta = s3_meta(s3, bucket, content_key)
    assert NLINK_META in meta, f'{content_key}: no x-amz-meta-{NLINK_META} in {meta}'
    return int(meta[NLINK_META])


def assert_name(s3, bucket, key, content_key):
    """key is a name object: empty, pointing to content_key."""
    h = s3_head(s3, bucket, key)
    assert h is not None, f'name object {key!r} missing; keys: {sorted(s3_keys(s3, bucket))[:30]}'
    assert h['Metadata'].get(LINK_META) == content_key, \
        f'{key}: x-amz-meta-{LINK_META} = {h["Metadata"].get(LINK_META)!r}, expected {content_key!r}'
    assert h['ContentLength'] == 0, f'{key}: a name object should be empty, has {h["ContentLength"]} bytes'


def link_graph(s3, bucket, prefix=''):
    """({name key: content key} for every name object, {content key: bfs-nlink}) of the bucket
    (HEAD of every object, a few at a time)."""
    keys = sorted(k for k in s3_keys(s3, bucket, prefix) if not k.endswith('/'))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        metas = list(pool.map(lambda k: s3_head(s3, bucket, k)['Metadata'], keys))
    names, contents = {}, {}
    for key, meta in zip(keys, metas):
        if key.startswith(prefix + INODES):
            contents[key] = int(meta.get(NLINK_META, '-1'))
        elif LINK_META in meta:
            names[key] = meta[LINK_META]
    return names, contents


def link_problems(s3, bucket, prefix='', graph=None):
    """What bucketfs-fsck should report (docs/hardlinks.md): dangling names, orphaned content
    objects, and link counts that differ from the number of names; as text lines."""
    names, contents = graph or link_graph(s3, bucket, prefix)
    out = [f'dangling name {n} -> {c} (no such content object)'
           for n, c in sorted(names.items()) if c not in contents]
    for c, n in sorted(contents.items()):
        count = sum(1 for v in names.values() if v == c)
        if count == 0:
            out.append(f'orphaned content object {c} (bfs-nlink {n}, no name points to it)')
        elif count != n:
            out.append(f'{c}: bfs-nlink {n} but {count} names point to it')
    return out


def wait_body(s3, bucket, key, data, timeout=15):
    """Waits for the write-back upload: key's body equals data."""
    ok = wait_until(lambda: s3_head(s3, bucket, key) is not None and s3_body(s3, bucket, key) == data,
                    timeout)
    assert ok, f'{key}: body in S3 is not the data written through the mount after {timeout}s'


# ---- tests: one link -----------------------------------------------------------------------

def test_hardlink_basics(mount, bucket, s3):
    """link(): counts, same st_ino, one content object with bfs-nlink 2, two empty name objects;
    a write through one name is seen through the other after close, and reaches S3 once."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'hello, world\n')
    os.link(a, b)

    sa, sb = os.stat(a), os.stat(b)
    assert (sa.st_nlink, sb.st_nlink) == (2, 2), f'st_nlink a={sa.st_nlink} b={sb.st_nlink}'
    assert sa.st_ino == sb.st_ino, f'st_ino a={sa.st_ino} b={sb.st_ino}'
    assert read_file(b) == b'hello, world\n'
    assert sorted(os.listdir(m.path)) == ['a', 'b'], f'listing {os.listdir(m.path)} (.bucketfs must be hidden)'
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(m.path, '.bucketfs'))

    ck = the_content_key(s3, bucket)
    assert nlink_of(s3, bucket, ck) == 2
    assert s3_body(s3, bucket, ck) == b'hello, world\n'
    assert_name(s3, bucket, 'a', ck)
    assert_name(s3, bucket, 'b', ck)

    with open(b, 'r+b') as f:       # write through b, same size then longer
        f.write(b'HELLO')
        f.seek(0, 2)
        f.write(b'more through b\n')
    new = b'HELLO, world\nmore through b\n'
    assert read_file(a) == new, 'a write through b is not seen through a after close'
    assert os.stat(a).st_size == len(new)
    assert os.stat(a).st_ino == os.stat(b).st_ino
    wait_body(s3, bucket, ck, new)
    assert nlink_of(s3, bucket, ck) == 2, 'the upload of new data lost the link count'
    assert_name(s3, bucket, 'a', ck)
    assert_name(s3, bucket, 'b', ck)
    assert content_keys(s3, bucket) == [ck], 'the upload made a second content object'

    # and the other way round, appending through a
    with open(a, 'ab') as f:
        f.write(b'through a\n')
    assert read_file(b) == new + b'through a\n'
    wait_body(s3, bucket, ck, new + b'through a\n')


def test_hardlink_in_prefix_mount(mount, bucket, s3):
    """With BUCKET:PREFIX the content objects live under PREFIX/.bucketfs/inodes/ (the prefix
    stays self-contained) and .bucketfs is hidden there."""
    m = mount(bucket, prefix='pfx')
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'0123456789')
    os.link(a, b)
    assert sorted(os.listdir(m.path)) == ['a', 'b']
    ck = the_content_key(s3, bucket, prefix='pfx/')
    assert content_keys(s3, bucket) == [], 'content objects outside the prefix'
    assert_name(s3, bucket, 'pfx/a', ck)
    assert_name(s3, bucket, 'pfx/b', ck)
    m.remount()
    assert (os.stat(a).st_nlink, os.stat(a).st_ino, read_file(b)) == (2, os.stat(b).st_ino, b'0123456789')
    assert not link_problems(s3, bucket, prefix='pfx/')


def test_hardlink_truncate_seen_at_once(mount, bucket, s3):
    """truncate(2) by path through one name is seen through the other at once (same file), like
    a write through an open descriptor after its close."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'0123456789')
    os.link(a, b)
    ck = the_content_key(s3, bucket)
    os.stat(a)
    os.truncate(b, 4)
    assert os.stat(a).st_size == 4, f'truncate through b: a has size {os.stat(a).st_size}'
    assert read_file(a) == b'0123'
    wait_body(s3, bucket, ck, b'0123')
    assert nlink_of(s3, bucket, ck) == 2


def test_hardlink_nlink_seen_at_once(mount, bucket, s3):
    """stat() of the existing name right after link() returns shows the new st_nlink (link(2):
    "the link count of the file shall be incremented"), not the count cached before the link.
    Repeated, since a late invalidation of the kernel's cached attributes loses only sometimes."""
    m = mount(bucket)
    stale = []
    for i in range(30):
        p = os.path.join(m.path, f'f{i}')
        write_file(p, b'x')
        os.stat(p)                                   # attributes cached in the kernel
        for n in (2, 3):
            os.link(p, f'{p}.{n}')
            got = os.stat(p).st_nlink
            if got != n:
                stale.append(f'f{i}: st_nlink {got} right after link #{n - 1}, expected {n}')
    assert not stale, f'{len(stale)} of 60 stats right after link() were stale:\n' + '\n'.join(stale[:10])
    names, contents = link_graph(s3, bucket)
    assert sorted(contents.values()) == [3] * 30, contents


def test_hardlink_attributes_shared(mount, bucket, s3):
    """chmod, chown and utime through one name are seen through the other at once, and stored
    in the content object."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'x' * 100)
    os.link(a, b)
    ck = the_content_key(s3, bucket)

    os.chmod(b, 0o640)
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o640, f'chmod through b: a has {os.stat(a).st_mode:o}'
    os.chown(a, 1000, 1001)
    sb = os.stat(b)
    assert (sb.st_uid, sb.st_gid) == (1000, 1001), f'chown through a: b has {sb.st_uid}:{sb.st_gid}'
    t = BASE_NS + 123456789
    os.utime(b, ns=(t, t + 1))
    assert os.stat(a).st_mtime_ns == t + 1, f'utime through b: a has mtime {os.stat(a).st_mtime_ns}'
    assert os.stat(a).st_nlink == 2

    def stored():
        meta = s3_meta(s3, bucket, ck)
        return (meta.get('mode'), meta.get('uid'), meta.get('gid'), meta.get('mtime'), meta.get(NLINK_META))
    want = (str(stat.S_IFREG | 0o640), '1000', '1001', f'{(t + 1) // 10**9}.{(t + 1) % 10**9:09d}', '2')
    assert wait_until(lambda: stored() == want, 10), f'content object metadata {stored()}, expected {want}'
    assert s3_body(s3, bucket, ck) == b'x' * 100, 'a metadata change altered the content'

    m.remount()
    for p in (a, b):
        st = os.stat(p)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, st.st_nlink) == \
            (0o640, 1000, 1001, t + 1, 2), f'{p} after remount: {st}'


def test_hardlink_xattr_shared(mount, bucket, s3):
    """setxattr/removexattr through one name are seen through the other at once (same file),
    and stored in the content object."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'x')
    os.link(a, b)
    ck = the_content_key(s3, bucket)
    assert os.listxattr(a) == []                # a's attributes known to the mount
    os.setxattr(b, 'user.k', b'v1')
    assert os.listxattr(a) == ['user.k'], f'setxattr through b: listxattr(a) = {os.listxattr(a)}'
    assert os.getxattr(a, 'user.k') == b'v1'
    assert 'xattr' in s3_meta(s3, bucket, ck), f'{ck}: no x-amz-meta-xattr: {s3_meta(s3, bucket, ck)}'
    os.removexattr(a, 'user.k')
    assert os.listxattr(b) == [], f'removexattr through a: listxattr(b) = {os.listxattr(b)}'
    assert nlink_of(s3, bucket, ck) == 2


def test_hardlink_unlink(mount, bucket, s3):
    """unlink of one name leaves the other intact and lowers bfs-nlink; the last unlink deletes
    the content object."""
    m = mount(bucket)
    d = os.path.join(m.path, 'd')
    os.mkdir(d)
    names = [os.path.join(d, n) for n in ('n1', 'n2', 'n3')]
    data = os.urandom(200000)
    write_file(names[0], data)
    os.link(names[0], names[1])
    os.link(names[1], names[2])   # a link of a link: the same content
    ck = the_content_key(s3, bucket)
    assert nlink_of(s3, bucket, ck) == 3
    assert {os.stat(n).st_nlink for n in names} == {3}
    assert len({os.stat(n).st_ino for n in names}) == 1

    os.unlink(names[0])
    assert not os.path.exists(names[0])
    assert [os.stat(n).st_nlink for n in names[1:]] == [2, 2]
    assert read_file(names[2]) == data
    assert s3_head(s3, bucket, 'd/n1') is None, 'the unlinked name object is still in S3'
    assert nlink_of(s3, bucket, ck) == 2
    assert s3_body(s3, bucket, ck) == data

    os.unlink(names[2])
    assert os.stat(names[1]).st_nlink == 1
    assert read_file(names[1]) == data
    assert nlink_of(s3, bucket, ck) == 1
    assert sorted(os.listdir(d)) == ['n2']

    os.unlink(names[1])
    assert os.listdir(d) == []
    assert content_keys(s3, bucket) == [], 'last unlink left the content object'
    assert s3_keys(s3, bucket, 'd/') <= {'d/'}, f'left in S3: {s3_keys(s3, bucket, "d/")}'
    m.remount()
    assert os.listdir(d) == []


def test_hardlink_open_file_survives_last_unlink(mount, bucket, s3):
    """A descriptor open on a linked file stays readable after all its names are unlinked (as
    it does for an unlinked plain file, test_posix), and the content object goes when it is
    closed, at the latest."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    data = os.urandom(3 * MiB)
    write_file(a, data)
    os.link(a, b)
    fd = os.open(b, os.O_RDONLY)
    try:
        os.unlink(a)
        os.unlink(b)
        assert os.listdir(m.path) == []
        try:
            got = os.pread(fd, len(data) + 1, 0)
        except OSError as e:
            pytest.fail(f'read of an open, fully unlinked linked file failed: {e!r}')
        assert got == data, f'read {len(got)} bytes, not the file'
    finally:
        os.close(fd)
    m.unmount()
    assert s3_keys(s3, bucket) == set(), f'left in S3: {sorted(s3_keys(s3, bucket))}'


@pytest.mark.parametrize('how', ['read', 'write'])
def test_hardlink_unlink_open_name_keeps_others(mount, bucket, s3, how):
    """Unlinking a name that is open removes that name only: the file lives on under its other
    name b, with its data (and, for a write through the still-open descriptor after the
    unlink, with that write: it is the same file)."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'original content\n')
    os.link(a, b)
    ck = the_content_key(s3, bucket)
    fd = os.open(a, os.O_RDWR if how == 'write' else os.O_RDONLY)
    try:
        os.unlink(a)
        if how == 'write':
            os.pwrite(fd, b'WRITTEN', 0)
        else:
            assert os.pread(fd, 100, 0) == b'original content\n'
    finally:
        os.close(fd)
    # 'WRITTEN' (7 bytes) over 'original' (8 bytes) leaves its last 'l'
    want = b'WRITTENl content\n' if how == 'write' else b'original content\n'
    assert sorted(os.listdir(m.path)) == ['b']
    assert read_file(b) == want, f'b after unlink of open name a ({how}): {read_file(b)!r}'
    assert os.stat(b).st_nlink == 1
    m.unmount()
    assert content_keys(s3, bucket) == [ck], f'content object {ck} gone: keys {sorted(s3_keys(s3, bucket))}'
    assert nlink_of(s3, bucket, ck) == 1
    assert s3_body(s3, bucket, ck) == want
    assert_name(s3, bucket, 'b', ck)
    m.remount()
    assert read_file(b) == want


def test_hardlink_rename_keeps_link(mount, bucket, s3):
    """rename of a linked name moves the small name object; the link survives, also a remount."""
    m = mount(bucket)
    a = os.path.join(m.path, 'a')
    write_file(a, b'shared data')
    os.link(a, os.path.join(m.path, 'b'))
    ck = the_content_key(s3, bucket)
    ino = os.stat(a).st_ino
    os.mkdir(os.path.join(m.path, 'sub'))
    c = os.path.join(m.path, 'sub', 'c')
    os.rename(os.path.join(m.path, 'b'), c)

    st = os.stat(c)
    assert (st.st_ino, st.st_nlink) == (ino, 2), f'renamed name: ino {st.st_ino} nlink {st.st_nlink}'
    assert s3_head(s3, bucket, 'b') is None, 'old name object left behind'
    assert_name(s3, bucket, 'sub/c', ck)
    assert nlink_of(s3, bucket, ck) == 2
    assert content_keys(s3, bucket) == [ck]

    write_file(c, b'changed through the renamed name')
    assert read_file(a) == b'changed through the renamed name'
    wait_body(s3, bucket, ck, b'changed through the renamed name')

    m.remount()
    sa, sc = os.stat(a), os.stat(c)
    assert (sa.st_ino, sa.st_nlink, sc.st_ino, sc.st_nlink) == (ino, 2, ino, 2), (sa, sc)
    assert read_file(c) == read_file(a) == b'changed through the renamed name'
    assert not link_problems(s3, bucket)


def test_hardlink_survives_remount(mount, bucket, s3):
    """After unmount + mount: nlink 2 and the same st_ino, derived from the content key."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'persist')
    os.chmod(a, 0o604)
    os.link(a, b)
    before = os.stat(a)
    m.remount()
    sa, sb = os.stat(a), os.stat(b)
    assert sa.st_ino == sb.st_ino == before.st_ino, f'st_ino before {before.st_ino}, after a={sa.st_ino} b={sb.st_ino}'
    assert sa.st_nlink == sb.st_nlink == 2
    assert stat.S_IMODE(sb.st_mode) == 0o604
    assert read_file(b) == b'persist'
    assert sorted(os.listdir(m.path)) == ['a', 'b']
    assert not link_problems(s3, bucket)


def test_link_keeps_the_existing_names_st_ino(mount, bucket, s3):
    """create p1, rename it to p2, link p2 p1: st_ino stays what the file had before the link,
    through both names, on a second mount and after a remount (find, tar, du and rsync -H
    rely on it). The number is stored on the object (x-amz-meta-bfs-ino), bound to its key."""
    m = mount(bucket)
    p1, p2 = os.path.join(m.path, 'p1'), os.path.join(m.path, 'p2')
    write_file(p1, b'numbered')
    born = os.stat(p1).st_ino
    os.rename(p1, p2)
    assert os.stat(p2).st_ino == born, 'rename changed st_ino'
    os.link(p2, p1)
    s1, s2 = os.stat(p1), os.stat(p2)
    assert (s1.st_ino, s2.st_ino, s1.st_nlink) == (born, born, 2), \
        f'before link {born}, after: p1 {s1.st_ino} p2 {s2.st_ino} nlink {s1.st_nlink}'
    ck = the_content_key(s3, bucket)
    stored = s3_meta(s3, bucket, ck).get('bfs-ino', '')
    assert re.fullmatch(r'[0-9a-f]{16}-[0-9a-f]{16}', stored) and int(stored[:16], 16) == born, \
        f'{ck}: x-amz-meta-bfs-ino {stored!r}, expected the number {born:016x}'
    m2 = mount(bucket)
    assert {os.stat(os.path.join(m2.path, n)).st_ino for n in ('p1', 'p2')} == {born}
    m.remount()
    assert {os.stat(os.path.join(m.path, n)).st_ino for n in ('p1', 'p2')} == {born}
    assert not link_problems(s3, bucket)


def test_inode_numbers_never_shared(mount, bucket, s3):
    """No two files share st_ino, whatever reuses a key: a new file at the name a linked
    file left, a new file at a renamed file's old name, a copy another S3 tool made (it
    copies x-amz-meta-bfs-ino along); in this mount and after a remount."""
    m = mount(bucket)
    p = lambda n: os.path.join(m.path, n)
    write_file(p('a'), b'linked')
    os.link(p('a'), p('b'))
    os.unlink(p('a'))
    write_file(p('a'), b'new file at the old name')
    write_file(p('r'), b'renamed away')
    os.rename(p('r'), p('r2'))
    write_file(p('r'), b'new file at the renamed one\'s name')
    write_file(p('orig'), b'copied by another tool')
    s3.copy_object(Bucket=bucket, Key='copy', CopySource={'Bucket': bucket, 'Key': 'orig'})
    names = ['a', 'b', 'r', 'r2', 'orig', 'copy']

    def numbers():
        return {n: os.stat(p(n)).st_ino for n in names}
    seen = numbers()
    assert len(set(seen.values())) == len(names), f'shared st_ino in this mount: {seen}'
    m.remount()
    after = numbers()
    assert len(set(after.values())) == len(names), f'shared st_ino after remount: {after}'
    for n in ('a', 'b', 'r', 'r2', 'orig'):
        assert after[n] == seen[n], f'{n}: st_ino {seen[n]} before the remount, {after[n]} after'
    assert s3_meta(s3, bucket, 'copy').get('bfs-ino') == s3_meta(s3, bucket, 'orig').get('bfs-ino'), \
        'the copy should carry the original\'s header (what makes this test meaningful)'


def test_hardlink_seen_by_second_mount(mount, bucket, s3):
    """A second mount of the bucket (its own cache dir) sees the link: nlink 2, same st_ino as
    the first mount, the data; and an unlink there is seen by the first mount."""
    m1 = mount(bucket, opts=['stat_ttl=1'])
    m2 = mount(bucket, opts=['stat_ttl=1'])
    assert m1.cache_dir != m2.cache_dir
    a1, b1 = os.path.join(m1.path, 'a'), os.path.join(m1.path, 'b')
    write_file(a1, b'first mount wrote this')
    os.stat(os.path.join(m2.path, '.'))
    os.link(a1, b1)
    ino = os.stat(a1).st_ino

    a2, b2 = os.path.join(m2.path, 'a'), os.path.join(m2.path, 'b')

    def seen():
        try:
            sa, sb = os.stat(a2), os.stat(b2)
        except FileNotFoundError:
            return None
        return (sa.st_nlink, sb.st_nlink, sa.st_ino, sb.st_ino)
    assert wait_until(lambda: seen() == (2, 2, ino, ino), 10), f'second mount: {seen()}, expected (2, 2, {ino}, {ino})'
    assert read_file(b2) == b'first mount wrote this'

    os.unlink(a2)
    ck = the_content_key(s3, bucket)
    assert nlink_of(s3, bucket, ck) == 1
    assert wait_until(lambda: not os.path.exists(a1) and os.stat(b1).st_nlink == 1, 10), \
        f'first mount after unlink on the second: a exists={os.path.exists(a1)}, nlink(b)={os.stat(b1).st_nlink}'
    assert read_file(b1) == b'first mount wrote this'


def test_hardlink_cost_independent_of_size(mount, bucket, s3, proxy):
    """link() of a 20 MiB file costs the same requests as of a 1-byte file and moves no data
    through the client: no GetObject, no upload of the content."""
    m = mount(bucket, opts=['sync_close'])
    big, small = os.path.join(m.path, 'big'), os.path.join(m.path, 'small')
    data = os.urandom(20 * MiB)
    write_file(big, data)
    write_file(small, b's')

    costs = {}
    for name in ('small', 'big'):
        for n in (1, 2):     # the first link converts the file, the second only counts
            reset_counters(proxy)
            os.link(os.path.join(m.path, name), os.path.join(m.path, f'{name}.l{n}'))
            st = proxy.stats()
            costs[name, n] = st
            assert st.get('GetObject', 0) == 0, f'link #{n} of {name} read data: {fmt_stats(st)}'
            assert st['bytes_up'] < 64 * 1024, f'link #{n} of {name} uploaded {st["bytes_up"]} bytes: {fmt_stats(st)}'
            assert st.get('UploadPart', 0) == 0 and st.get('CreateMultipartUpload', 0) == 0, fmt_stats(st)
            assert st.get('CopyObject', 0) >= 1, f'link #{n} of {name}: no server-side copy? {fmt_stats(st)}'
    strip = lambda st: {k: v for k, v in st.items() if not k.startswith('bytes_')}  # noqa: E731
    for n in (1, 2):
        assert strip(costs['big', n]) == strip(costs['small', n]), \
            f'link #{n}: 20 MiB file {fmt_stats(costs["big", n])} vs 1 byte {fmt_stats(costs["small", n])}'

    assert os.stat(os.path.join(m.path, 'big.l2')).st_nlink == 3
    m.unmount()
    names, contents = link_graph(s3, bucket)
    assert sorted(names) == ['big', 'big.l1', 'big.l2', 'small', 'small.l1', 'small.l2'], names
    assert sorted(contents.values()) == [3, 3], contents
    assert hashlib.sha256(s3_body(s3, bucket, names['big.l2'])).digest() == hashlib.sha256(data).digest()
    m.remount()
    assert sha256_file(os.path.join(m.path, 'big.l1')) == hashlib.sha256(data).hexdigest()


def test_link_and_unlink_change_ctime(mount, bucket, s3):
    """link(2) and unlink(2) change the file's status time, seen through every name and
    kept in S3 (rsync and backup tools use ctime to find changed files)."""
    m = mount(bucket)
    a, b, c = (os.path.join(m.path, n) for n in 'abc')
    write_file(a, b'status')
    t0 = os.stat(a).st_ctime_ns
    time.sleep(0.05)
    os.link(a, b)
    t1 = os.stat(a).st_ctime_ns
    assert t1 > t0 and os.stat(b).st_ctime_ns == t1
    time.sleep(0.05)
    os.link(a, c)
    t2 = os.stat(b).st_ctime_ns
    assert t2 > t1
    time.sleep(0.05)
    os.unlink(c)
    t3 = os.stat(a).st_ctime_ns
    assert t3 > t2 and os.stat(b).st_ctime_ns == t3
    m.remount()
    assert os.stat(a).st_ctime_ns == os.stat(b).st_ctime_ns == t3


def test_hardlink_of_fifo_and_socket(mount, bucket, s3):
    """Hard links to a fifo and a socket: one inode (st_ino, st_nlink 2), the type kept
    through both names and after a remount; removing one name keeps the other."""
    import socket
    m = mount(bucket)
    fifo, sock = os.path.join(m.path, 'fifo'), os.path.join(m.path, 'sock')
    os.mkfifo(fifo, 0o640)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(sock)
    finally:
        s.close()
    for p in (fifo, sock):
        os.link(p, p + '.2')
        a, b = os.lstat(p), os.lstat(p + '.2')
        assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2, (p, a, b)
        assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode)
    m.remount()
    assert stat.S_ISFIFO(os.lstat(fifo + '.2').st_mode)
    assert stat.S_ISSOCK(os.lstat(sock + '.2').st_mode)
    os.unlink(fifo)
    st = os.lstat(fifo + '.2')
    assert stat.S_ISFIFO(st.st_mode) and st.st_nlink == 1
    m.unmount()
    assert 'fifo' not in s3_keys(s3, bucket)


def test_hardlink_refused_for_directories_and_symlinks(mount, bucket, s3):
    """link of a directory fails with EPERM (the kernel refuses it before bucketfs), and so does
    a link of a symlink itself (bucketfs: not supported); nothing is stored."""
    m = mount(bucket)
    d = os.path.join(m.path, 'dir')
    os.mkdir(d)
    os.symlink('dir', os.path.join(m.path, 'sl'))
    with pytest.raises(OSError) as e:
        os.link(d, os.path.join(m.path, 'dir2'))
    assert e.value.errno == errno.EPERM, e.value
    assert not os.path.exists(os.path.join(m.path, 'dir2'))
    with pytest.raises(OSError) as e:
        os.link(os.path.join(m.path, 'sl'), os.path.join(m.path, 'sl2'), follow_symlinks=False)
    assert e.value.errno == errno.EPERM, e.value
    assert not os.path.lexists(os.path.join(m.path, 'sl2'))
    m.unmount()
    keys = s3_keys(s3, bucket)
    assert keys == {'dir/', 'sl'}, f'keys after refused links: {sorted(keys)}'
    assert content_keys(s3, bucket) == []


def test_hardlink_rename_over_linked_name(mount, bucket, s3):
    """rename(x, b) where b is one name of a linked file replaces that name: the content's
    bfs-nlink drops and the other name a stays intact (no orphans, no stale counts)."""
    m = mount(bucket)
    a, b, x = (os.path.join(m.path, n) for n in ('a', 'b', 'x'))
    write_file(a, b'linked')
    os.link(a, b)
    write_file(x, b'replacement')
    os.rename(x, b)
    assert read_file(b) == b'replacement'
    assert read_file(a) == b'linked'
    assert os.stat(a).st_nlink == 1, f'a still counts {os.stat(a).st_nlink} links after its sibling was replaced'
    m.unmount()
    ck = the_content_key(s3, bucket)
    assert nlink_of(s3, bucket, ck) == 1, f'{ck}: bfs-nlink not lowered when name b was replaced by rename'
    assert not link_problems(s3, bucket)
    assert s3_body(s3, bucket, 'b') == b'replacement'


def test_hardlink_rename_onto_own_sibling(mount, bucket, s3):
    """rename(a, b) where a and b are links to the same file does nothing (POSIX: "If the old
    argument and the new argument resolve to the same existing file, rename() shall return
    successfully and perform no other action")."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'same file')
    os.link(a, b)
    os.rename(a, b)
    assert sorted(os.listdir(m.path)) == ['a', 'b'], f'after rename(a, b) of two links: {os.listdir(m.path)}'
    assert os.stat(a).st_nlink == 2
    m.unmount()
    assert not link_problems(s3, bucket), link_problems(s3, bucket)
    assert sorted(link_graph(s3, bucket)[0]) == ['a', 'b']


# ---- rsync -H ------------------------------------------------------------------------------

def rsync(*args, ok=(0,)):
    r = subprocess.run(['rsync', *args], capture_output=True, text=True, timeout=600)
    assert r.returncode in ok, f'rsync {" ".join(args)} failed ({r.returncode}): {r.stderr[-3000:]}'
    return r.stdout


def ino_groups(root):
    """Regular files under root grouped by st_ino: sorted list of sorted relative-path tuples."""
    by_ino = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                by_ino.setdefault(st.st_ino, []).append((os.path.relpath(p, root), st.st_nlink))
    groups = []
    for members in by_ino.values():
        nl = {n for _, n in members}
        assert nl == {len(members)}, f'{root}: names {members} share an inode but st_nlink says {nl}'
        groups.append(tuple(sorted(p for p, _ in members)))
    return sorted(groups)


def test_hardlink_rsync_H(mount, bucket, s3, test_dir):
    """rsync -aH of a tree with hard links inside reproduces the link structure: the same groups
    of names share st_ino and st_nlink on the mount, also after a remount, and in the bucket."""
    src = test_dir / 'src'
    for d in ('x', 'y/z', 'w'):
        os.makedirs(src / d)
    rnd = random.Random(5)
    groups = [('a', 'x/a2', 'y/z/a3'), ('b', 'w/b2'), ('y/c', 'y/c2', 'x/c3', 'w/c4'), ('single',),
              ('x/empty', 'w/empty2')]
    for i, g in enumerate(groups):
        p = src / g[0]
        write_file(p, bytes(rnd.getrandbits(8) for _ in range(i * 1000 + (0 if 'empty' in g[0] else 17))))
        os.chown(p, 1000 + i % 2, 1000)
        os.chmod(p, 0o640 + i)
        os.utime(p, ns=(BASE_NS, BASE_NS + i * 1111))
        for other in g[1:]:
            os.link(p, src / other)
    want = ino_groups(src)
    assert want == sorted(tuple(sorted(g)) for g in groups)

    m = mount(bucket)
    dst = os.path.join(m.path, 'dst')
    rsync('-aH', '--numeric-ids', f'{src}/', dst + '/')
    assert ino_groups(dst) == want, 'link structure after rsync -aH'
    assert rsync('-aniH', '--numeric-ids', f'{src}/', dst + '/') == ''
    m.remount()
    assert ino_groups(dst) == want, 'link structure after remount'
    assert rsync('-aniH', '--numeric-ids', f'{src}/', dst + '/') == ''
    for g in groups:
        for p in g:
            assert read_file(os.path.join(dst, p)) == read_file(src / g[0]), p

    names, contents = link_graph(s3, bucket)
    linked = sorted(tuple(sorted(n[len('dst/'):] for n, c in names.items() if c == ck)) for ck in contents)
    assert linked == sorted(tuple(sorted(g)) for g in groups if len(g) > 1), f'name objects by content: {linked}'
    assert not link_problems(s3, bucket), link_problems(s3, bucket)
    assert s3_head(s3, bucket, 'dst/single')['Metadata'].get(LINK_META) is None, 'a single name became a link'


# ---- the backup scenario of issue 5 --------------------------------------------------------

N_FILES = 1000          # regular files besides the big one
BIG = 50 * MiB


def make_backup_tree(src, rnd):
    """~1,100 small files in nested dirs (uids 0/1000/1001, several modes, nanosecond mtimes,
    empty files), 30 symlinks, one 50 MiB file. Returns the list of regular files (relative)."""
    dirs = [f'd{i:02d}' + (f'/s{j}' if j else '') + (f'/t{k}' if k else '')
            for i in range(12) for j in range(3) for k in range(3) if j or not k]
    for d in dirs:
        os.makedirs(os.path.join(src, d), exist_ok=True)
    modes, owners = (0o644, 0o600, 0o755, 0o640, 0o444, 0o4755), ((0, 0), (1000, 1000), (1001, 1000), (1000, 1001))
    files = []
    for i in range(N_FILES):
        rel = f'{rnd.choice(dirs)}/f{i:04d}' + rnd.choice(('', '.txt', '.bin', ' spaced'))
        size = 0 if i % 20 == 0 else rnd.randrange(1, 3000)
        full = os.path.join(src, rel)
        write_file(full, rnd.randbytes(size))
        os.chown(full, *owners[i % len(owners)])
        os.chmod(full, modes[i % len(modes)])
        os.utime(full, ns=(BASE_NS, BASE_NS + i * 1000003 + 7))
        files.append(rel)
    big = 'd00/big.img'
    with open(os.path.join(src, big), 'wb') as f:
        f.write(rnd.randbytes(BIG))
    os.utime(os.path.join(src, big), ns=(BASE_NS, BASE_NS + 5))
    files.append(big)
    for i in range(30):
        full = os.path.join(src, rnd.choice(dirs), f'link{i:02d}')
        os.symlink(rnd.choice(('../x', '/etc/hostname', f'f{i:04d}', 'no/such')), full)
        os.lchown(full, *owners[i % len(owners)])
    for d in sorted(dirs, key=lambda d: -d.count('/')):
        os.utime(os.path.join(src, d), ns=(BASE_NS, BASE_NS + len(d)))
    return files


def tree_digest(root):
    """{relative path: (type, mode, uid, gid, size, mtime_ns, sha256 or link target)} of a tree
    (directories without times: rsync sets them, but that is not what this test is about).
    Files are read a few at a time: the mount serves requests in parallel."""
    paths = []
    for dirpath, dirs, files in os.walk(root):
        paths += [os.path.join(dirpath, f) for f in dirs + files]

    def one(p):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            what = sha256_file(p)
        elif stat.S_ISLNK(st.st_mode):
            what = os.readlink(p)
        else:
            what = None
        d = stat.S_ISDIR(st.st_mode)
        return os.path.relpath(p, root), (oct(st.st_mode), st.st_uid, st.st_gid, 0 if d else st.st_size,
                                          None if d else st.st_mtime_ns, what)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, paths))


@pytest.mark.timeout(600)
def test_hardlink_rsync_link_dest_backup(mount, bucket, s3, proxy, test_dir):
    """Issue 5's acceptance scenario: day 1 full copy, 10 changed / 5 deleted / 5 added files,
    day 2 with --link-dest: only the 15 changed/added files are transferred and uploaded, all
    others are links (nlink 2, same st_ino) to day 1, no file data is read back; then day 1
    goes and day 2 is still complete and byte-identical, with no dangling names in the bucket."""
    t0 = last = time.monotonic()
    laps = []

    def lap(what):
        nonlocal last
        now = time.monotonic()
        laps.append((what, now - last))
        last = now
    rnd = random.Random(20261125)
    src = str(test_dir / 'src')
    files = make_backup_tree(src, rnd)
    lap('source tree')
    m = mount(bucket, opts=['consistency=writeback'])   # a backup target (README)
    bk = os.path.join(m.path, 'bk')
    os.mkdir(bk)
    rsync('-a', '--numeric-ids', '--delete', src + '/', bk + '/day1/')
    m.remount()
    lap('day 1 rsync + upload')

    small = [f for f in files if f != 'd00/big.img']
    picked = rnd.sample(small, 20)
    changed, deleted = picked[:10], picked[10:15]
    for i, rel in enumerate(changed):
        full = os.path.join(src, rel)
        st = os.stat(full)
        write_file(full, b'changed %d ' % i + rnd.randbytes(rnd.randrange(0, 5000)))
        os.utime(full, ns=(BASE_NS, st.st_mtime_ns + 10**9 + i))
    for rel in deleted:
        os.unlink(os.path.join(src, rel))
    added = [f'd{i:02d}/s1/new{i}.dat' for i in range(5)]
    for i, rel in enumerate(added):
        write_file(os.path.join(src, rel), rnd.randbytes(1000 * (i + 1)))
        os.chown(os.path.join(src, rel), 1001, 1001)
    new_bytes = sum(os.path.getsize(os.path.join(src, f)) for f in changed + added)

    reset_counters(proxy)
    lap('changes')
    out = rsync('-a', '--numeric-ids', '--delete', f'--link-dest={bk}/day1', '--stats', '-i',
                src + '/', bk + '/day2/')
    m.unmount()     # the write-back uploads are part of the day-2 cost
    lap('day 2 rsync + upload')
    cost = proxy.stats()
    reqs = proxy.requests()

    n = re.search(r'Number of regular files transferred: ([\d,]+)', out)
    assert n, f'no transfer count in rsync --stats output:\n{out[-2000:]}'
    sent = sorted(line.split(' ', 1)[1] for line in out.splitlines() if line.startswith('>f'))
    assert sent == sorted(changed + added), f'rsync transferred {sent}, expected {sorted(changed + added)}'
    assert int(n.group(1).replace(',', '')) == 15, f'rsync --stats: {n.group(0)}'

    print(f'day 2 requests: {fmt_stats(cost)}; changed bytes {new_bytes}')
    assert cost['bytes_up'] < new_bytes + 256 * 1024, \
        f'day 2 uploaded {cost["bytes_up"]} bytes for {new_bytes} changed bytes: {fmt_stats(cost)}'
    assert cost.get('UploadPart', 0) == 0 and cost.get('CreateMultipartUpload', 0) == 0, \
        f'day 2 made a multipart upload (the 50 MiB file?): {fmt_stats(cost)}'
    data_reads = [r for r in reqs if r.op == 'GetObject' and
                  (r.key or '').startswith(('bk/day1/', INODES)) and
                  not os.path.islink(os.path.join(src, (r.key or '')[len('bk/day1/'):]))]
    assert not data_reads, 'day 2 read file data back: ' + ', '.join(f'{r.key} {r.bytes_down}B' for r in data_reads[:20])

    m.remount()
    unchanged = [f for f in files if f not in changed and f not in deleted]
    bad = []
    for rel in unchanged:
        s1, s2 = os.lstat(os.path.join(bk, 'day1', rel)), os.lstat(os.path.join(bk, 'day2', rel))
        if not (s1.st_nlink == s2.st_nlink == 2 and s1.st_ino == s2.st_ino):
            bad.append(f'{rel}: day1 ino {s1.st_ino} nlink {s1.st_nlink}, day2 ino {s2.st_ino} nlink {s2.st_nlink}')
    assert not bad, f'{len(bad)} unchanged files not linked across days:\n' + '\n'.join(bad[:20])
    for rel in changed + added:
        st = os.lstat(os.path.join(bk, 'day2', rel))
        assert st.st_nlink == 1, f'{rel} (changed/added) has st_nlink {st.st_nlink}'
    assert rsync('-ani', '--numeric-ids', src + '/', bk + '/day2/') == '', 'day 2 differs from the source'

    graph = link_graph(s3, bucket)
    names, contents = graph
    assert len(contents) == len(unchanged), f'{len(contents)} content objects for {len(unchanged)} unchanged files'
    assert set(contents.values()) == {2}, f'link counts {sorted(set(contents.values()))}'
    problems = link_problems(s3, bucket, graph=graph)
    assert not problems, f'{len(problems)} link problems after day 2:\n' + '\n'.join(problems[:20])
    lap('day 2 checks')

    proc = subprocess.run(['rm', '-rf', os.path.join(bk, 'day1')], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    m.remount()
    lap('rm -rf day1')
    assert os.listdir(bk) == ['day2']
    want, got = tree_digest(src), tree_digest(os.path.join(bk, 'day2'))
    diff = sorted(set(want.items()) ^ set(got.items()))
    assert not diff, f'day 2 differs from the source after rm -rf day1 ({len(diff)} entries):\n' + \
        '\n'.join(map(str, diff[:20]))
    nl = [rel for rel in unchanged if os.lstat(os.path.join(bk, 'day2', rel)).st_nlink != 1]
    assert not nl, f'st_nlink is not 1 after rm -rf day1: {nl[:10]}'

    assert not s3_keys(s3, bucket, 'bk/day1'), f'day 1 objects left: {sorted(s3_keys(s3, bucket, "bk/day1"))[:10]}'
    graph = link_graph(s3, bucket)
    problems = link_problems(s3, bucket, graph=graph)
    assert not problems, f'{len(problems)} link problems after rm -rf day1:\n' + '\n'.join(problems[:20])
    assert set(graph[1].values()) <= {1}, f'link counts after rm -rf day1: {sorted(set(graph[1].values()))}'
    lap('final checks')
    print('phases: ' + ', '.join(f'{k} {v:.1f}s' for k, v in laps) + f'; total {time.monotonic() - t0:.1f}s')



def test_rename_between_two_names_of_one_file_leaves_both_usable(mount, bucket, s3):
    """rename(a, b) where a and b are hard links of one file does nothing (POSIX), and both
    names keep working through the kernel afterwards: remove a, write and read through b
    (each name is an inode of its own here; the kernel took the rename for a real one and
    pointed b at a's inode, which the unlink then removed: stale data or ESTALE)."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    write_file(a, b'one file')
    os.link(a, b)
    os.rename(a, b)
    assert os.path.exists(a) and os.path.exists(b)
    assert os.stat(a).st_nlink == os.stat(b).st_nlink == 2
    os.unlink(a)
    assert os.stat(b).st_nlink == 1
    with open(b, 'ab') as f:
        f.write(b', appended')
    assert read_file(b) == b'one file, appended'
    os.truncate(b, 3)
    assert read_file(b) == b'one'
    m.remount()
    assert read_file(b) == b'one' and not os.path.exists(a)
    assert not link_problems(s3, bucket)
