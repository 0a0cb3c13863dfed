"""POSIX semantics of a bucketfs mount, each checked through the mount AND through boto3, and
again after unmount + remount (persistence)."""
import errno
import os
import random
import stat
import subprocess
import time

import pytest

from helpers import (DIR_TIMES_DELAY_S, assert_meta, decode_xattrs, parse_s3fs_time,
                     put_s3fs_object, read_file, reset_counters, run_as, s3_body, s3_head, s3_keys, s3_meta, s3fs_time,
                     wait_until, write_file)

MTIME_NS = 1600000001_987654321
ATIME_NS = 1600000000_123456789


def test_file_roundtrip_layout(mount, bucket, s3):
    m = mount(bucket)
    p = os.path.join(m.path, 'hello.txt')
    data = b'hello, bucket\n' * 100
    write_file(p, data)
    assert read_file(p) == data
    os.chmod(p, 0o640)
    os.chown(p, 1000, 1001)
    os.utime(p, ns=(ATIME_NS, MTIME_NS))  # last, so that no read can move atime afterwards
    st = os.stat(p)
    assert (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns) == \
        (stat.S_IFREG | 0o640, 1000, 1001, len(data), MTIME_NS)
    m.unmount()

    assert s3_body(s3, bucket, 'hello.txt') == data, 'object body is not the file bytes'
    meta = s3_meta(s3, bucket, 'hello.txt')
    assert_meta(meta, 'hello.txt', mode=stat.S_IFREG | 0o640, uid=1000, gid=1001, mtime_ns=MTIME_NS)
    assert parse_s3fs_time(meta.get('atime')) == ATIME_NS, f'x-amz-meta-atime {meta.get("atime")!r}'
    assert meta['mtime'] == s3fs_time(MTIME_NS), f'mtime not in s3fs format: {meta["mtime"]!r}'
    missing = {'mode', 'uid', 'gid', 'mtime', 'ctime', 'atime'} - set(meta)
    assert not missing, f'x-amz-meta-* missing: {missing}'
    assert s3_keys(s3, bucket) == {'hello.txt'}

    m.remount()
    st = os.stat(p)
    assert (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_atime_ns) == \
        (stat.S_IFREG | 0o640, 1000, 1001, len(data), MTIME_NS, ATIME_NS), 'attributes lost on remount'
    assert read_file(p) == data


def test_object_written_by_boto3_is_a_file(mount, bucket, s3):
    put_s3fs_object(s3, bucket, 'ext.bin', b'\x00\x01binary', mode=stat.S_IFREG | 0o604, uid=1001,
                    gid=1000, mtime_ns=MTIME_NS)
    m = mount(bucket)
    st = os.stat(os.path.join(m.path, 'ext.bin'))
    assert (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns) == \
        (stat.S_IFREG | 0o604, 1001, 1000, 8, MTIME_NS)
    assert read_file(os.path.join(m.path, 'ext.bin')) == b'\x00\x01binary'


def test_mkdir_marker_and_implicit_dirs(mount, bucket, s3):
    # No markers at all. (s3rver 3.7.1 reports a common prefix only if an object sits directly
    # below it, hence imp/top.txt; real S3 needs no such help.)
    s3.put_object(Bucket=bucket, Key='imp/sub/file.txt', Body=b'deep')
    s3.put_object(Bucket=bucket, Key='imp/top.txt', Body=b'top')
    m = mount(bucket)
    d = os.path.join(m.path, 'made')
    os.mkdir(d)
    os.chmod(d, 0o750)
    assert stat.S_ISDIR(os.stat(os.path.join(m.path, 'imp')).st_mode), 'prefix without marker is not a dir'
    assert stat.S_ISDIR(os.stat(os.path.join(m.path, 'imp', 'sub')).st_mode)
    assert read_file(os.path.join(m.path, 'imp', 'sub', 'file.txt')) == b'deep'
    assert sorted(os.listdir(m.path)) == ['imp', 'made']
    assert sorted(os.listdir(os.path.join(m.path, 'imp'))) == ['sub', 'top.txt']
    m.unmount()

    keys = s3_keys(s3, bucket)
    assert 'made/' in keys, f'mkdir left no "made/" marker: {sorted(keys)}'
    head = s3_head(s3, bucket, 'made/')
    assert head['ContentLength'] == 0
    assert head['ContentType'] == 'application/x-directory', f'marker Content-Type {head["ContentType"]!r}'
    assert_meta(s3_meta(s3, bucket, 'made/'), 'made/', mode=stat.S_IFDIR | 0o750, uid=0, gid=0)
    assert {'imp/sub/file.txt', 'imp/top.txt'} <= keys
    assert not {'imp/', 'imp/sub/'} & keys, 'looking at implicit directories wrote marker objects'

    m.remount()
    st = os.stat(d)
    assert st.st_mode == stat.S_IFDIR | 0o750, f'{st.st_mode:o}'
    assert os.listdir(d) == []


def test_rmdir(mount, bucket, s3):
    s3.put_object(Bucket=bucket, Key='implicit/child', Body=b'x')
    m = mount(bucket)
    d = os.path.join(m.path, 'd')
    os.mkdir(d)
    write_file(os.path.join(d, 'f'), b'content')
    with pytest.raises(OSError) as e:
        os.rmdir(d)
    assert e.value.errno == errno.ENOTEMPTY, f'rmdir of non-empty dir: {e.value}'
    with pytest.raises(OSError) as e:
        os.rmdir(os.path.join(m.path, 'implicit'))
    assert e.value.errno == errno.ENOTEMPTY, f'rmdir of non-empty implicit dir: {e.value}'
    os.unlink(os.path.join(d, 'f'))
    os.rmdir(d)
    assert not os.path.exists(d)
    assert os.listdir(m.path) == ['implicit']
    m.unmount()
    assert s3_keys(s3, bucket) == {'implicit/child'}
    m.remount()
    assert os.listdir(m.path) == ['implicit']


def test_readdir(mount, bucket, s3):
    put_s3fs_object(s3, bucket, 'dir/', mode=stat.S_IFDIR | 0o755)
    for i in range(20):
        put_s3fs_object(s3, bucket, f'dir/f{i:02d}', b'x' * i)
    s3.put_object(Bucket=bucket, Key='dir/implicit/x', Body=b'')
    m = mount(bucket)
    d = os.path.join(m.path, 'dir')
    os.mkdir(os.path.join(d, 'made'))
    write_file(os.path.join(d, 'new'), b'n')
    expected = sorted([f'f{i:02d}' for i in range(20)] + ['implicit', 'made', 'new'])
    assert sorted(os.listdir(d)) == expected
    with os.scandir(d) as it:
        kinds = {e.name: e.is_dir(follow_symlinks=False) for e in it}
    assert kinds['implicit'] and kinds['made'] and not kinds['f05'] and not kinds['new']
    assert os.path.getsize(os.path.join(d, 'f07')) == 7
    m.unmount()
    assert {'dir/made/', 'dir/new'} <= s3_keys(s3, bucket, 'dir/')
    m.remount()
    assert sorted(os.listdir(d)) == expected


def test_readdir_many_long_names(mount, bucket, s3):
    """Entries that need several getdents calls (and so readdir offsets) within one LIST page."""
    from concurrent.futures import ThreadPoolExecutor
    names = [f'{i:04d}-' + 'x' * 200 for i in range(400)]
    put_s3fs_object(s3, bucket, 'long/', mode=stat.S_IFDIR | 0o755)
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda n: s3.put_object(Bucket=bucket, Key=f'long/{n}', Body=b''), names))
    m = mount(bucket)
    got = os.listdir(os.path.join(m.path, 'long'))
    assert len(got) == len(names) and sorted(got) == names, \
        f'{len(got)} entries listed ({len(set(got))} distinct), expected {len(names)}'
    write_file(os.path.join(m.path, 'long', names[7] + 'y'), b'')
    assert len(os.listdir(os.path.join(m.path, 'long'))) == len(names) + 1
    m.unmount()
    assert len(s3_keys(s3, bucket, 'long/')) == len(names) + 2  # with the marker


@pytest.mark.parametrize('owner', [(0, 0), (1000, 1000), (1001, 1000), (1000, 1001)])
def test_chown_chmod(mount, bucket, s3, owner):
    uid, gid = owner
    m = mount(bucket)
    p = os.path.join(m.path, 'f')
    d = os.path.join(m.path, 'd')
    write_file(p, b'data')
    os.mkdir(d)
    for path, mode in ((p, 0o4751), (d, 0o1777)):
        os.chown(path, uid, gid)
        os.chmod(path, mode)  # after chown: chown may clear set-id bits
    st = os.stat(p)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4751, uid, gid)
    m.unmount()
    assert_meta(s3_meta(s3, bucket, 'f'), 'f', mode=stat.S_IFREG | 0o4751, uid=uid, gid=gid)
    assert_meta(s3_meta(s3, bucket, 'd/'), 'd/', mode=stat.S_IFDIR | 0o1777, uid=uid, gid=gid)
    assert s3_body(s3, bucket, 'f') == b'data', 'chmod/chown changed the body'
    m.remount()
    for path, mode in ((p, stat.S_IFREG | 0o4751), (d, stat.S_IFDIR | 0o1777)):
        st = os.stat(path)
        assert (st.st_mode, st.st_uid, st.st_gid) == (mode, uid, gid), f'{path} after remount'


def test_utimens_now_and_omit(mount, bucket, s3):
    m = mount(bucket)
    p = os.path.join(m.path, 'f')
    write_file(p, b'x')
    os.utime(p, ns=(ATIME_NS, MTIME_NS))
    # touch -m: mtime given, atime UTIME_OMIT
    subprocess.run(['touch', '-m', '-d', '@1500000000.25', p], check=True)
    st = os.stat(p)
    assert (st.st_mtime_ns, st.st_atime_ns) == (1500000000_250000000, ATIME_NS), 'touch -m touched atime'
    # touch -a: atime given, mtime UTIME_OMIT
    subprocess.run(['touch', '-a', '-d', '@1400000000.000000007', p], check=True)
    st = os.stat(p)
    assert (st.st_mtime_ns, st.st_atime_ns) == (1500000000_250000000, 1400000000_000000007), \
        'touch -a touched mtime'
    # touch -m without a date: mtime UTIME_NOW, atime UTIME_OMIT
    before = time.time_ns()
    subprocess.run(['touch', '-m', p], check=True)
    st = os.stat(p)
    assert before - 2 * 10**9 <= st.st_mtime_ns <= time.time_ns() + 2 * 10**9, \
        f'UTIME_NOW gave mtime {st.st_mtime_ns}, now is {before}'
    assert st.st_atime_ns == 1400000000_000000007, 'touch -m (UTIME_NOW) touched atime'
    now_mtime = st.st_mtime_ns
    q = os.path.join(m.path, 'g')
    write_file(q, b'y')
    os.utime(q, ns=(ATIME_NS, MTIME_NS))
    before = time.time_ns()
    subprocess.run(['touch', q], check=True)  # utimensat(NULL): both UTIME_NOW
    st = os.stat(q)
    for t in (st.st_mtime_ns, st.st_atime_ns):
        assert before - 2 * 10**9 <= t <= time.time_ns() + 2 * 10**9, f'touch gave {t}, now is {before}'
    m.unmount()
    meta = s3_meta(s3, bucket, 'f')
    assert parse_s3fs_time(meta.get('mtime')) == now_mtime
    assert parse_s3fs_time(meta.get('atime')) == 1400000000_000000007
    m.remount()
    st = os.stat(p)
    assert (st.st_mtime_ns, st.st_atime_ns) == (now_mtime, 1400000000_000000007)


def test_nanosecond_mtime_roundtrip(mount, bucket, s3):
    m = mount(bucket)
    cases = {'a': 1700000000_000000001, 'b': 1700000000_999999999, 'c': 1700000000_000000000,
             'd': 1700000000_100000000, 'old': 1_000000123}
    for name, ns in cases.items():
        write_file(os.path.join(m.path, name), name.encode())
        os.utime(os.path.join(m.path, name), ns=(ns, ns))
    os.mkdir(os.path.join(m.path, 'dir'))
    os.utime(os.path.join(m.path, 'dir'), ns=(5, 1234567890_123456789))
    m.unmount()
    for name, ns in cases.items():
        assert_meta(s3_meta(s3, bucket, name), name, mtime_ns=ns)
    assert_meta(s3_meta(s3, bucket, 'dir/'), 'dir/', mtime_ns=1234567890_123456789)
    m.remount()
    for name, ns in cases.items():
        assert os.stat(os.path.join(m.path, name)).st_mtime_ns == ns, name
    assert os.stat(os.path.join(m.path, 'dir')).st_mtime_ns == 1234567890_123456789


def test_directory_times_follow_its_entries(mount, bucket, s3):
    """Creating, removing or renaming an entry sets the directory's mtime and ctime at once
    (POSIX), kept after the attributes expire (stat_ttl) over the older mtime S3 holds; S3
    gets them with the marker within DIR_TIMES_DELAY_S, with no call on the directory; an
    explicit utime wins, also over a store still queued, as rsync sets directory times after
    filling them."""
    m = mount(bucket, opts=['stat_ttl=1'])
    d, e = os.path.join(m.path, 'd'), os.path.join(m.path, 'e')
    os.mkdir(d)
    os.mkdir(e)
    old = 1_000_000_000_000_000_000
    for p in (d, e):
        os.utime(p, ns=(old, old))
    assert os.stat(d).st_mtime_ns == old

    def fresh(p, before):
        st = os.stat(p)
        return st.st_mtime_ns > before and st.st_ctime_ns >= st.st_mtime_ns - 10**9

    steps = [(d, lambda: write_file(os.path.join(d, 'f'), b'x')),
             (d, lambda: os.mkdir(os.path.join(d, 'sub'))),
             (d, lambda: os.symlink('f', os.path.join(d, 'ln'))),
             (d, lambda: os.link(os.path.join(d, 'f'), os.path.join(d, 'hard'))),
             (d, lambda: os.unlink(os.path.join(d, 'hard'))),
             (d, lambda: os.rmdir(os.path.join(d, 'sub'))),
             (e, lambda: os.rename(os.path.join(d, 'ln'), os.path.join(e, 'ln')))]
    for i, (p, step) in enumerate(steps):
        before = os.stat(p).st_mtime_ns
        time.sleep(0.01)
        step()
        assert fresh(p, before), (i, before, os.stat(p))
    t_d = os.stat(d).st_mtime_ns
    assert t_d > time.time_ns() - 60 * 10**9
    assert os.stat(d).st_mtime_ns >= os.stat(e).st_mtime_ns - 10**10  # the rename: both
    os.utime(e, ns=(old, old))                       # explicit times win
    last_change = time.monotonic()
    time.sleep(1.5)                                   # attributes expired: asked again
    assert os.stat(d).st_mtime_ns == t_d
    assert os.stat(e).st_mtime_ns == old

    def stored(key):
        meta = s3_meta(s3, bucket, key)
        return parse_s3fs_time(meta['mtime']), parse_s3fs_time(meta['ctime'])
    assert wait_until(lambda: stored('d/')[0] == t_d, DIR_TIMES_DELAY_S + 10), \
        f'd/ in S3: {stored("d/")}, in the mount {t_d}'
    assert stored('d/')[1] >= t_d
    time.sleep(max(0.0, last_change + DIR_TIMES_DELAY_S + 2 - time.monotonic()))
    assert stored('e/')[0] == old, 'a queued store of the rename\'s times overwrote the utime'
    os.chmod(d, 0o750)                               # the marker's next write keeps it
    assert os.stat(d).st_mtime_ns == t_d
    assert stored('d/')[0] == t_d
    m.remount()
    assert os.stat(d).st_mtime_ns == t_d and os.stat(e).st_mtime_ns == old


def test_directory_times_cost_one_copy_per_delay(mount, bucket, s3, proxy):
    """Twenty creates and removes in a directory store its times once, DIR_TIMES_DELAY_S after
    the first: one HEAD and one metadata CopyObject of its marker, no request per create; a
    fresh mount shows them. The same at unmount, when the delay has not passed yet."""
    m = mount(bucket)
    d = os.path.join(m.path, 'd')
    os.mkdir(d)
    time.sleep(0.2)
    reset_counters(proxy)
    for i in range(20):
        write_file(os.path.join(d, f'f{i}'), b'x')
    for i in range(0, 20, 2):
        os.unlink(os.path.join(d, f'f{i}'))
    t_d = os.stat(d).st_mtime_ns

    def marker_ops():
        return sorted(r.op for r in proxy.requests() if r.key == 'd/')
    assert wait_until(lambda: marker_ops() == ['CopyObject', 'HeadObject'], DIR_TIMES_DELAY_S + 10), \
        marker_ops()
    assert parse_s3fs_time(s3_meta(s3, bucket, 'd/')['mtime']) == t_d
    time.sleep(1)
    assert marker_ops() == ['CopyObject', 'HeadObject'], f'more than one store: {marker_ops()}'

    write_file(os.path.join(d, 'late'), b'y')       # queued, not yet due ...
    t_late = os.stat(d).st_mtime_ns
    m.unmount()                                      # ... stored at unmount
    assert parse_s3fs_time(s3_meta(s3, bucket, 'd/')['mtime']) == t_late
    m2 = mount(bucket)
    assert os.stat(os.path.join(m2.path, 'd')).st_mtime_ns == t_late


def test_truncate_up_and_down(mount, bucket, s3):
    m = mount(bucket)
    p = os.path.join(m.path, 't')
    data = bytes(range(256)) * 40  # 10240 bytes
    write_file(p, data)
    os.truncate(p, 100)
    assert read_file(p) == data[:100]
    os.truncate(p, 3 * 1024 * 1024 + 5)  # sparse extension beyond a cache block
    with open(p, 'r+b') as f:
        assert f.read(100) == data[:100]
        f.seek(2 * 1024 * 1024)
        assert f.read(10) == b'\0' * 10
        f.truncate(50)
    assert read_file(p) == data[:50]
    with open(p, 'r+b') as f:
        f.truncate(200)
    expected = data[:50] + b'\0' * 150
    assert read_file(p) == expected
    assert os.stat(p).st_size == 200
    m.unmount()
    assert s3_body(s3, bucket, 't') == expected
    m.remount()
    assert read_file(p) == expected


def test_truncate_unread_object(mount, bucket, s3):
    """truncate of an object the mount never read: the kept head must come from S3."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    put_s3fs_object(s3, bucket, 'big', data)
    m = mount(bucket)
    p = os.path.join(m.path, 'big')
    os.truncate(p, 1024 * 1024 + 3)
    m.unmount()
    assert s3_body(s3, bucket, 'big') == data[:1024 * 1024 + 3]
    m.remount()
    assert read_file(p) == data[:1024 * 1024 + 3]


def test_open_flags(mount, bucket, s3):
    m = mount(bucket)
    p = os.path.join(m.path, 'f')
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b'0123456789')
    os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b'AB')
    os.write(fd, b'CD')
    os.close(fd)
    assert read_file(p) == b'0123456789ABCD', 'O_APPEND did not write at the end'
    q = os.path.join(m.path, 'g')
    write_file(q, b'old contents that are long')
    fd = os.open(q, os.O_WRONLY | os.O_TRUNC)
    assert os.fstat(fd).st_size == 0, 'O_TRUNC left data'
    os.write(fd, b'new')
    os.close(fd)
    e = os.path.join(m.path, 'e')
    write_file(e, b'to be emptied')
    os.close(os.open(e, os.O_WRONLY | os.O_TRUNC))
    assert read_file(q) == b'new' and read_file(e) == b''
    m.unmount()
    assert (s3_body(s3, bucket, 'f'), s3_body(s3, bucket, 'g'), s3_body(s3, bucket, 'e')) == \
        (b'0123456789ABCD', b'new', b'')
    m.remount()
    assert (read_file(p), read_file(q), read_file(e)) == (b'0123456789ABCD', b'new', b'')
    fd = os.open(q, os.O_WRONLY | os.O_TRUNC)  # O_TRUNC of an object not yet read by this mount
    os.close(fd)
    m.unmount()
    assert s3_body(s3, bucket, 'g') == b''


def test_random_writes_match_local(mount, bucket, s3, tmp_path):
    """200 random pwrite/ftruncate ops on the mount and on a local file give the same bytes."""
    rng = random.Random(20261125)
    initial = rng.randbytes(1500 * 1024)
    put_s3fs_object(s3, bucket, 'rand', initial)
    local = tmp_path / 'local'
    local.write_bytes(initial)
    m = mount(bucket)
    p = os.path.join(m.path, 'rand')
    fm = os.open(p, os.O_RDWR)
    fl = os.open(local, os.O_RDWR)
    limit = 5 * 1024 * 1024
    try:
        for i in range(200):
            r = rng.random()
            if r < 0.10:
                size = rng.randrange(0, limit)
                os.ftruncate(fm, size)
                os.ftruncate(fl, size)
            elif r < 0.15:
                os.fsync(fm)
            elif r < 0.20:  # close and reopen: the data must survive close
                os.close(fm)
                fm = os.open(p, os.O_RDWR)
            elif r < 0.30:  # read back a random range
                off, n = rng.randrange(0, limit), rng.randrange(1, 200000)
                assert os.pread(fm, n, off) == os.pread(fl, n, off), f'op {i}: read at {off}+{n} differs'
            else:
                off = rng.randrange(0, limit)
                buf = rng.randbytes(rng.choice([1, 7, 4096, 65536, rng.randrange(1, 300000)]))
                assert os.pwrite(fm, buf, off) == len(buf)
                os.pwrite(fl, buf, off)
        assert os.fstat(fm).st_size == os.fstat(fl).st_size
    finally:
        os.close(fm)
        os.close(fl)
    expected = local.read_bytes()
    got = read_file(p)
    assert len(got) == len(expected) and got == expected, 'mount content differs from local file'
    m.unmount()
    body = s3_body(s3, bucket, 'rand')
    assert len(body) == len(expected) and body == expected, 'S3 object differs from local file'
    m.remount()
    assert read_file(p) == expected, 'content differs after remount'


def test_fsync_and_flush(mount, bucket, s3):
    m = mount(bucket)
    p = os.path.join(m.path, 'f')
    with open(p, 'w+b') as f:
        f.write(b'a' * 100000)
        f.flush()
        os.fsync(f.fileno())
        f.write(b'b' * 10)
        f.flush()
        os.fdatasync(f.fileno())
        assert os.pread(f.fileno(), 10, 100000) == b'b' * 10
    assert os.stat(p).st_size == 100010
    m.unmount()
    assert s3_body(s3, bucket, 'f') == b'a' * 100000 + b'b' * 10


def test_unlink(mount, bucket, s3):
    put_s3fs_object(s3, bucket, 'old', b'from s3')
    m = mount(bucket)
    write_file(os.path.join(m.path, 'new'), b'fresh')
    write_file(os.path.join(m.path, 'keep'), b'keep')
    os.unlink(os.path.join(m.path, 'old'))
    os.unlink(os.path.join(m.path, 'new'))  # possibly never uploaded
    assert sorted(os.listdir(m.path)) == ['keep']
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(m.path, 'old'))
    m.unmount()
    assert s3_keys(s3, bucket) == {'keep'}
    m.remount()
    assert sorted(os.listdir(m.path)) == ['keep']


def test_unlink_open_file(mount, bucket, s3):
    """POSIX: an unlinked file stays readable and writable through descriptors already open."""
    data = os.urandom(300000)
    put_s3fs_object(s3, bucket, 'gone', data)
    m = mount(bucket)
    p = os.path.join(m.path, 'gone')
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert not os.path.exists(p)
        assert os.pread(fd, len(data), 0) == data, 'data of an open, unlinked file lost'
        os.pwrite(fd, b'more', len(data))
        assert os.pread(fd, 4, len(data)) == b'more'
    finally:
        os.close(fd)
    assert os.listdir(m.path) == []
    m.unmount()
    assert s3_keys(s3, bucket) == set(), 'an unlinked file came back after its last close'


def test_symlink(mount, bucket, s3):
    put_s3fs_object(s3, bucket, 'extlink', b'some/where', mode=stat.S_IFLNK | 0o777)
    m = mount(bucket)
    target = '../a dir/tärget file'
    lp = os.path.join(m.path, 'link')
    os.symlink(target, lp)
    write_file(os.path.join(m.path, 'real'), b'real')
    os.symlink('real', os.path.join(m.path, 'rel'))
    assert os.readlink(lp) == target
    assert stat.S_ISLNK(os.lstat(lp).st_mode)
    assert read_file(os.path.join(m.path, 'rel')) == b'real'
    assert os.readlink(os.path.join(m.path, 'extlink')) == 'some/where'
    assert stat.S_ISLNK(os.lstat(os.path.join(m.path, 'extlink')).st_mode)
    m.unmount()
    assert s3_body(s3, bucket, 'link') == target.encode(), 'symlink body is not the target'
    assert stat.S_ISLNK(int(s3_meta(s3, bucket, 'link')['mode'])), 'symlink mode lacks S_IFLNK'
    m.remount()
    assert os.readlink(lp) == target
    assert read_file(os.path.join(m.path, 'rel')) == b'real'
    assert os.lstat(lp).st_size == len(target.encode())


def test_mkfifo(mount, bucket, s3):
    m = mount(bucket)
    f = os.path.join(m.path, 'fifo')
    os.mkfifo(f, 0o640)
    assert stat.S_ISFIFO(os.lstat(f).st_mode)
    m.unmount()
    mode = int(s3_meta(s3, bucket, 'fifo')['mode'])
    assert stat.S_ISFIFO(mode) and stat.S_IMODE(mode) == 0o640, f'fifo stored with mode {mode:o}'
    m.remount()
    st = os.lstat(f)
    assert stat.S_ISFIFO(st.st_mode), f'not a fifo after remount: {st.st_mode:o}'


def test_device_nodes(mount, bucket, s3, test_dir):
    """mknod of character and block devices (as root): type and device number kept in
    x-amz-meta-mode / -rdev (as s3fs stores them), across a remount, and rsync -a of a tree
    with devices (a chroot, a container image) finds nothing to do the second time."""
    m = mount(bucket)
    chr_dev, blk_dev = os.makedev(1, 3), os.makedev(8, 17)
    os.mknod(os.path.join(m.path, 'null'), stat.S_IFCHR | 0o666, chr_dev)
    os.mknod(os.path.join(m.path, 'sdb1'), stat.S_IFBLK | 0o660, blk_dev)
    st = os.lstat(os.path.join(m.path, 'null'))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == chr_dev
    modes = {n: os.lstat(os.path.join(m.path, n)).st_mode for n in ('null', 'sdb1')}
    m.unmount()
    meta = s3_meta(s3, bucket, 'null')
    assert stat.S_ISCHR(int(meta['mode'])) and int(meta['mode']) == modes['null'], meta
    assert int(meta['rdev']) == chr_dev, meta
    meta = s3_meta(s3, bucket, 'sdb1')
    assert stat.S_ISBLK(int(meta['mode'])) and int(meta['mode']) == modes['sdb1'], meta
    assert int(meta['rdev']) == blk_dev, meta
    m.remount()
    for name, kind, dev in (('null', stat.S_ISCHR, chr_dev), ('sdb1', stat.S_ISBLK, blk_dev)):
        st = os.lstat(os.path.join(m.path, name))
        assert kind(st.st_mode) and st.st_rdev == dev, f'{name}: {st.st_mode:o} {st.st_rdev}'
    src = test_dir / 'tree'
    src.mkdir()
    os.mknod(src / 'tty0', stat.S_IFCHR | 0o620, os.makedev(4, 0))
    os.mknod(src / 'loop0', stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mkfifo(src / 'fifo', 0o600)
    dst = os.path.join(m.path, 'tree')
    subprocess.run(['rsync', '-a', '--numeric-ids', f'{src}/', f'{dst}/'], check=True)
    m.remount()
    again = subprocess.run(['rsync', '-ani', '--numeric-ids', f'{src}/', f'{dst}/'],
                           capture_output=True, text=True, check=True)
    assert again.stdout.strip() == '', f'rsync finds differences: {again.stdout}'


def test_link_counts_of_directories_and_unlinked_files(mount, bucket, s3):
    """A directory whose listing is known counts 2 + its subdirectories (find, du and rsync
    use it); fstat of an open file whose last name is gone reports 0 links."""
    m = mount(bucket)
    d = os.path.join(m.path, 'd')
    os.mkdir(d)
    for sub in ('a', 'b', 'c'):
        os.mkdir(os.path.join(d, sub))
    write_file(os.path.join(d, 'file'), b'x')
    os.listdir(d)
    assert os.stat(d).st_nlink == 5
    os.rmdir(os.path.join(d, 'c'))
    assert os.stat(d).st_nlink == 4
    m.remount()
    os.listdir(d)
    assert os.stat(d).st_nlink == 4
    found = subprocess.run(['find', d, '-mindepth', '1', '-type', 'd'], capture_output=True,
                           text=True, check=True).stdout.split()
    assert sorted(os.path.basename(p) for p in found) == ['a', 'b']
    f = os.path.join(m.path, 'gone')
    write_file(f, b'still readable')
    with open(f, 'rb') as fh:
        os.unlink(f)
        assert os.fstat(fh.fileno()).st_nlink == 0
        assert fh.read() == b'still readable'


def test_statvfs(mount, bucket, s3):
    m = mount(bucket)
    v = os.statvfs(m.path)
    assert v.f_bsize > 0 and v.f_blocks > 0 and v.f_bavail > 0, f'statvfs reports no space: {v}'
    assert v.f_namemax >= 255, f'f_namemax {v.f_namemax}'
    out = subprocess.run(['df', '-P', m.path], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    write_file(os.path.join(m.path, 'x'), b'x')
    m.unmount()
    assert s3_keys(s3, bucket) == {'x'}


def test_xattrs(mount, bucket, s3):
    m = mount(bucket)
    p = os.path.join(m.path, 'f')
    d = os.path.join(m.path, 'd')
    write_file(p, b'body')
    os.mkdir(d)
    binary = bytes(range(256))
    os.setxattr(p, 'user.bin', binary)
    os.setxattr(p, 'user.text', b'hello world')
    os.setxattr(p, 'user.gone', b'bye')
    os.setxattr(d, 'user.ondir', b'dirval')
    subprocess.run(['setfattr', '-n', 'user.cli', '-v', 'from setfattr', p], check=True)
    with pytest.raises(FileExistsError):
        os.setxattr(p, 'user.text', b'x', os.XATTR_CREATE)
    with pytest.raises(OSError) as e:
        os.setxattr(p, 'user.nothere', b'x', os.XATTR_REPLACE)
    assert e.value.errno == errno.ENODATA
    os.removexattr(p, 'user.gone')
    with pytest.raises(OSError) as e:
        os.getxattr(p, 'user.gone')
    assert e.value.errno == errno.ENODATA
    assert sorted(os.listxattr(p)) == ['user.bin', 'user.cli', 'user.text']
    assert os.getxattr(p, 'user.bin') == binary
    m.unmount()
    xa = decode_xattrs(s3_meta(s3, bucket, 'f'))
    assert xa == {'user.bin': binary, 'user.text': b'hello world', 'user.cli': b'from setfattr'}, \
        f'x-amz-meta-xattr decodes to {xa}'
    assert decode_xattrs(s3_meta(s3, bucket, 'd/')) == {'user.ondir': b'dirval'}
    assert s3_body(s3, bucket, 'f') == b'body'
    m.remount()
    assert sorted(os.listxattr(p)) == ['user.bin', 'user.cli', 'user.text']
    assert os.getxattr(p, 'user.bin') == binary
    assert os.getxattr(d, 'user.ondir') == b'dirval'
    out = subprocess.run(['getfattr', '--only-values', '-n', 'user.cli', p], capture_output=True)
    assert out.returncode == 0 and out.stdout == b'from setfattr', out


def test_permissions_checked_by_kernel(mount, bucket, s3):
    m = mount(bucket, opts=['allow_other'])
    write_file(os.path.join(m.path, 'secret'), b'top secret')
    os.chmod(os.path.join(m.path, 'secret'), 0o600)
    write_file(os.path.join(m.path, 'public'), b'for everyone')
    os.chmod(os.path.join(m.path, 'public'), 0o644)
    write_file(os.path.join(m.path, 'mine'), b'owned by 1000')
    os.chmod(os.path.join(m.path, 'mine'), 0o600)
    os.chown(os.path.join(m.path, 'mine'), 1000, 1000)
    os.mkdir(os.path.join(m.path, 'rootdir'))
    os.chmod(os.path.join(m.path, 'rootdir'), 0o755)
    # The mountpoint may sit below a directory other users can't enter (pytest's 0700 tmp dirs):
    # reach it through an inherited descriptor, so only the mount's own permissions count.
    fd = os.open(m.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        def as_user(uid, *argv):
            return run_as(uid, uid, list(argv), pass_fds=[fd])
        root = f'/proc/self/fd/{fd}'
        r = as_user(1000, 'cat', f'{root}/public')
        assert r.returncode == 0 and r.stdout == 'for everyone', f'uid 1000 cannot read a 0644 file: {r}'
        r = as_user(1000, 'cat', f'{root}/secret')
        assert r.returncode != 0 and 'Permission denied' in r.stderr, f'uid 1000 read a root 0600 file: {r}'
        r = as_user(1000, 'cat', f'{root}/mine')
        assert r.returncode == 0 and r.stdout == 'owned by 1000', r
        r = as_user(1001, 'cat', f'{root}/mine')
        assert r.returncode != 0 and 'Permission denied' in r.stderr, f'uid 1001 read 1000\'s 0600 file: {r}'
        r = as_user(1000, 'touch', f'{root}/rootdir/new-by-1000')
        assert r.returncode != 0 and 'Permission denied' in r.stderr, f'uid 1000 wrote into a 0755 root dir: {r}'
        r = as_user(1000, 'sh', '-c', f'echo x >> {root}/public')
        assert r.returncode != 0, f'uid 1000 appended to a 0644 root file: {r}'
    finally:
        os.close(fd)
    m.unmount()
    assert s3_keys(s3, bucket) == {'secret', 'public', 'mine', 'rootdir/'}
    assert s3_body(s3, bucket, 'public') == b'for everyone'
    m.remount()
    fd = os.open(m.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        r = run_as(1000, 1000, ['cat', f'/proc/self/fd/{fd}/secret'], pass_fds=[fd])
        assert r.returncode != 0 and 'Permission denied' in r.stderr, f'after remount: {r}'
        r = run_as(1000, 1000, ['cat', f'/proc/self/fd/{fd}/mine'], pass_fds=[fd])
        assert r.returncode == 0 and r.stdout == 'owned by 1000', f'after remount: {r}'
    finally:
        os.close(fd)


NAMES = ['with space', 'ünïcødé-日本語', 'per%cent', 'pct%2Fslash', 'plus+sign', 'hash#tag',
         'question?mark', 'amp&eq=semi;', 'tilde~star*', "quote'dq\"", 'a  b', ' leading']


def test_special_names(mount, bucket, s3):
    put_s3fs_object(s3, bucket, 'from-s3/', mode=stat.S_IFDIR | 0o755)
    for n in NAMES:
        put_s3fs_object(s3, bucket, f'from-s3/{n}', n.encode())
    m = mount(bucket)
    os.mkdir(os.path.join(m.path, 'dir +#?%'))
    for n in NAMES:
        write_file(os.path.join(m.path, 'dir +#?%', n), n.encode())
    assert sorted(os.listdir(os.path.join(m.path, 'from-s3'))) == sorted(NAMES)
    for n in NAMES:
        assert read_file(os.path.join(m.path, 'from-s3', n)) == n.encode(), n
    m.unmount()
    assert s3_keys(s3, bucket, 'dir +#?%/') == {'dir +#?%/'} | {f'dir +#?%/{n}' for n in NAMES}
    for n in NAMES:
        assert s3_body(s3, bucket, f'dir +#?%/{n}') == n.encode(), n
    m.remount()
    assert sorted(os.listdir(os.path.join(m.path, 'dir +#?%'))) == sorted(NAMES)
    for n in NAMES:
        assert read_file(os.path.join(m.path, 'dir +#?%', n)) == n.encode(), n


def test_prefix_mount(mount, bucket, s3):
    s3.put_object(Bucket=bucket, Key='outside', Body=b'not mine')
    put_s3fs_object(s3, bucket, 'pre/fix/inside', b'mine')
    m = mount(bucket, prefix='pre/fix')
    assert sorted(os.listdir(m.path)) == ['inside']
    assert read_file(os.path.join(m.path, 'inside')) == b'mine'
    write_file(os.path.join(m.path, 'new'), b'new')
    os.mkdir(os.path.join(m.path, 'sub'))
    m.unmount()
    assert s3_keys(s3, bucket) == {'outside', 'pre/fix/inside', 'pre/fix/new', 'pre/fix/sub/'}
    assert s3_body(s3, bucket, 'pre/fix/new') == b'new'
    m.remount()
    assert sorted(os.listdir(m.path)) == ['inside', 'new', 'sub']


def test_uid_gid_umask_defaults(mount, bucket, s3):
    s3.put_object(Bucket=bucket, Key='plain.txt', Body=b'no metadata')
    s3.put_object(Bucket=bucket, Key='plaindir/x', Body=b'')
    put_s3fs_object(s3, bucket, 'owned', b'', mode=stat.S_IFREG | 0o666, uid=0, gid=0)
    m = mount(bucket, opts=['uid=1000', 'gid=1001', 'umask=027'])
    # docs/layout.md: 0666 & ~umask for files, 0777 & ~umask for directories
    for name, mode in (('plain.txt', stat.S_IFREG | 0o640), ('plaindir', stat.S_IFDIR | 0o750)):
        st = os.stat(os.path.join(m.path, name))
        assert st.st_mode == mode, f'{name}: mode {st.st_mode:o} with umask=027, expected {mode:o}'
        assert (st.st_uid, st.st_gid) == (1000, 1001), f'{name}: owner {st.st_uid}:{st.st_gid}'
    st = os.stat(os.path.join(m.path, 'owned'))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o666), \
        'uid=/gid=/umask= overrode metadata of an object that has it'
    assert read_file(os.path.join(m.path, 'plain.txt')) == b'no metadata'
    m.unmount()
    assert s3_body(s3, bucket, 'plain.txt') == b'no metadata'


def test_cache_dir_option(mount, bucket, s3, tmp_path):
    cache = tmp_path / 'cache'
    cache.mkdir()
    data = os.urandom(3 * 1024 * 1024)
    put_s3fs_object(s3, bucket, 'cached', data)
    m = mount(bucket, opts=[f'cache_dir={cache}'])
    assert read_file(os.path.join(m.path, 'cached')) == data
    write_file(os.path.join(m.path, 'written'), data[:12345])
    used = [os.path.join(d, f) for d, _, fs in os.walk(cache) for f in fs]
    assert used, f'cache_dir={cache} holds no files after reading 3 MiB'
    m.unmount()
    assert s3_body(s3, bucket, 'written') == data[:12345]


def test_sync_close(mount, bucket, s3):
    m = mount(bucket, opts=['sync_close', 'upload_delay=30'])
    data = os.urandom(2 * 1024 * 1024 + 1)
    for i in range(3):
        write_file(os.path.join(m.path, f'f{i}'), data[i:])
        h = s3_head(s3, bucket, f'f{i}')  # right after close() returned
        assert h is not None and h['ContentLength'] == len(data) - i, \
            f'with sync_close, f{i} is not complete in S3 after close(): {h and h["ContentLength"]}'
        assert s3_body(s3, bucket, f'f{i}') == data[i:]
    m.unmount()


def test_upload_delay(mount, bucket, s3):
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=4'])
    data = b'delayed' * 1000
    write_file(os.path.join(m.path, 'late'), data)
    closed = time.monotonic()
    h = s3_head(s3, bucket, 'late')
    assert h is None or h['ContentLength'] != len(data), \
        'upload_delay=4: the object was complete in S3 right after close()'
    done = wait_until(lambda: (s3_head(s3, bucket, 'late') or {}).get('ContentLength') == len(data), 30)
    waited = time.monotonic() - closed
    assert done, 'upload_delay=4: object not uploaded within 30 s after close()'
    assert waited >= 3, f'upload_delay=4 but the object was complete after {waited:.1f} s'
    assert s3_body(s3, bucket, 'late') == data
    m.unmount()


def test_unmount_writes_all_data(mount, bucket, s3):
    """fusermount3 -u with uploads still pending: the daemon finishes them before it exits."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=60'])
    files = {f'd/f{i}': os.urandom(i * 100000) for i in range(6)}
    os.mkdir(os.path.join(m.path, 'd'))
    for k, v in files.items():
        write_file(os.path.join(m.path, k), v)
    t0 = time.monotonic()
    m.unmount()
    took = time.monotonic() - t0
    assert took < 45, f'unmount waited {took:.0f} s (upload_delay instead of flushing now?)'
    for k, v in files.items():
        assert s3_body(s3, bucket, k) == v, f'{k} incomplete in S3 after unmount'


def test_stat_ttl_expiry(mount, bucket, s3):
    """Changes made directly in S3 show through the mount once stat_ttl has passed."""
    put_s3fs_object(s3, bucket, 'seen', b'v1')
    m = mount(bucket, opts=['stat_ttl=1'])
    p = os.path.join(m.path, 'seen')
    assert read_file(p) == b'v1'
    assert os.listdir(m.path) == ['seen']
    put_s3fs_object(s3, bucket, 'seen', b'version two', mode=stat.S_IFREG | 0o600, uid=1001)
    put_s3fs_object(s3, bucket, 'added', b'new')
    assert wait_until(lambda: sorted(os.listdir(m.path)) == ['added', 'seen'], 10), \
        f'object added in S3 not listed 10 s later with stat_ttl=1: {os.listdir(m.path)}'
    assert wait_until(lambda: os.stat(p).st_size == 11, 10), 'new size not seen 10 s later'
    st = os.stat(p)
    assert (st.st_mode, st.st_uid) == (stat.S_IFREG | 0o600, 1001)
    assert read_file(p) == b'version two', 'stale data after the object changed in S3'
    s3.delete_object(Bucket=bucket, Key='added')
    assert wait_until(lambda: not os.path.exists(os.path.join(m.path, 'added')), 10), \
        'object deleted in S3 still there 10 s later'
    m.unmount()
    assert s3_keys(s3, bucket) == {'seen'}


def test_cache_revalidated_after_change_in_s3(mount, bucket, s3, tmp_path):
    """Blocks cached in cache_dir are not served after the object changed in S3 (same size,
    same metadata, different bytes) while nothing had it mounted."""
    cache = tmp_path / 'cache-keep'
    v1, v2 = os.urandom(2 * 1024 * 1024), os.urandom(2 * 1024 * 1024)
    put_s3fs_object(s3, bucket, 'f', v1, mtime_ns=MTIME_NS)
    m = mount(bucket, opts=[f'cache_dir={cache}'])
    assert read_file(os.path.join(m.path, 'f')) == v1
    m.unmount()
    put_s3fs_object(s3, bucket, 'f', v2, mtime_ns=MTIME_NS)
    m.remount()
    assert read_file(os.path.join(m.path, 'f')) == v2, 'stale cached data served after the object changed'


def test_pending_files_are_visible(mount, bucket, s3):
    """Files not uploaded yet (upload_delay) are listed, have their size, and keep their
    directory non-empty; what was unlinked before its upload never reaches S3."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=30'])
    d = os.path.join(m.path, 'd')
    os.mkdir(d)
    for i in range(40):
        write_file(os.path.join(d, f'p{i:02d}'), b'z' * i)
    assert sorted(os.listdir(d)) == [f'p{i:02d}' for i in range(40)]
    assert [os.stat(os.path.join(d, f'p{i:02d}')).st_size for i in range(40)] == list(range(40))
    with pytest.raises(OSError) as e:
        os.rmdir(d)
    assert e.value.errno == errno.ENOTEMPTY
    for i in range(0, 40, 2):
        os.unlink(os.path.join(d, f'p{i:02d}'))
    assert sorted(os.listdir(d)) == [f'p{i:02d}' for i in range(1, 40, 2)]
    m.unmount()
    assert s3_keys(s3, bucket) == {'d/'} | {f'd/p{i:02d}' for i in range(1, 40, 2)}
    assert s3_body(s3, bucket, 'd/p39') == b'z' * 39


def test_errno_cases(mount, bucket, s3):
    m = mount(bucket)
    os.mkdir(os.path.join(m.path, 'd'))
    write_file(os.path.join(m.path, 'f'), b'f')
    cases = [
        (lambda: os.mkdir(os.path.join(m.path, 'd')), errno.EEXIST),
        (lambda: os.mkdir(os.path.join(m.path, 'f')), errno.EEXIST),
        (lambda: open(os.path.join(m.path, 'd'), 'wb'), errno.EISDIR),
        (lambda: open(os.path.join(m.path, 'nothere'), 'rb'), errno.ENOENT),
        (lambda: os.listdir(os.path.join(m.path, 'f')), errno.ENOTDIR),
        (lambda: write_file(os.path.join(m.path, 'f', 'x'), b''), errno.ENOTDIR),
        (lambda: os.unlink(os.path.join(m.path, 'd')), errno.EISDIR),
        (lambda: os.rmdir(os.path.join(m.path, 'f')), errno.ENOTDIR),
        (lambda: os.rmdir(os.path.join(m.path, 'nothere')), errno.ENOENT),
        (lambda: os.readlink(os.path.join(m.path, 'f')), errno.EINVAL),
        (lambda: os.symlink('t', os.path.join(m.path, 'f')), errno.EEXIST),
    ]
    for i, (fn, want) in enumerate(cases):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == want, f'case {i}: {e.value} (expected {errno.errorcode[want]})'
    m.unmount()
    assert s3_keys(s3, bucket) == {'d/', 'f'}


def test_parallel_io(mount, bucket, s3):
    """8 threads writing, rereading and overwriting files at once (the FUSE loop is multi-threaded)."""
    from concurrent.futures import ThreadPoolExecutor
    m = mount(bucket)
    os.mkdir(os.path.join(m.path, 'par'))
    rng = random.Random(7)
    want = {f'par/t{t}-{i}': rng.randbytes(rng.choice([0, 1, 4095, 70000, 1024 * 1024 + 1, 3000000]))
            for t in range(8) for i in range(6)}

    def worker(t):
        mine = sorted(k for k in want if k.startswith(f'par/t{t}-'))
        for k in mine:
            write_file(os.path.join(m.path, k), b'first version')
            write_file(os.path.join(m.path, k), want[k])
        for k in mine:
            got = read_file(os.path.join(m.path, k))
            assert got == want[k], f'{k}: read back {len(got)} bytes, wrote {len(want[k])}'
    with ThreadPoolExecutor(8) as ex:
        for f in [ex.submit(worker, t) for t in range(8)]:
            f.result()
    assert len(os.listdir(os.path.join(m.path, 'par'))) == len(want)
    m.unmount()
    assert s3_keys(s3, bucket) == {'par/'} | set(want)
    for k, v in want.items():
        assert s3_body(s3, bucket, k) == v, f'{k} differs in S3'


def test_unmount_right_after_close(mount, bucket, s3):
    """close() then fusermount3 -u at once, many times: the last change is never lost (the kernel
    sends RELEASE asynchronously, so it must not be the only place where changes are kept)."""
    m = mount(bucket)
    lost = []
    for i in range(20):
        p = os.path.join(m.path, f'f{i}')
        write_file(p, f'version {i}'.encode())
        if i:
            os.close(os.open(os.path.join(m.path, f'f{i - 1}'), os.O_WRONLY | os.O_TRUNC))
        m.unmount()
        if (s3_head(s3, bucket, f'f{i}') or {}).get('ContentLength') != len(f'version {i}'):
            lost.append(f'f{i} (new file)')
        if i and s3_body(s3, bucket, f'f{i - 1}') != b'':
            lost.append(f'f{i - 1} (O_TRUNC)')
        m.remount()
    assert not lost, f'changes lost when unmounting right after close(): {lost}'
