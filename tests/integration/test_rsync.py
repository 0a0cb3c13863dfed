"""rsync -a into a bucketfs mount keeps everything rsync checks: a second rsync -ani has nothing
to do, also after unmount + remount; and the objects carry the same owner/mode/mtime."""
import os
import stat
import subprocess

from helpers import assert_meta, parse_s3fs_time, s3_body, s3_keys, s3_meta

BASE_NS = 1600000000_000000000


def make_tree(src):
    """A tree with owners 0/1000/1001, modes 0600/0644/0755/04755/01777, nanosecond mtimes,
    symlinks, empty files, nested dirs, awkward names. Returns the list of relative paths."""
    os.mkdir(src)
    files = [  # path, mode, uid, gid, size
        ('a.txt', 0o644, 0, 0, 1000),
        ('secret', 0o600, 1000, 1000, 333),
        ('exe', 0o755, 1001, 1001, 70000),
        ('suid', 0o4755, 1000, 1000, 12),
        ('empty', 0o644, 1001, 1000, 0),
        ('with space é+#%', 0o640, 0, 1001, 5),
        ('nested/deep/deeper/file', 0o644, 1000, 1001, 4096),
        ('nested/deep/also empty', 0o600, 0, 0, 0),
        ('tmp/inside', 0o666, 1001, 1001, 3),
    ]
    dirs = [('nested', 0o755, 0, 0), ('nested/deep', 0o750, 1000, 1000),
            ('nested/deep/deeper', 0o700, 1001, 1001), ('tmp', 0o1777, 0, 0), ('emptydir', 0o755, 1000, 0)]
    links = [('link-rel', 'a.txt', 0), ('link-abs', '/etc/hostname', 1000),
             ('nested/deep/up', '../../exe', 1001), ('dangling', 'no/such/target', 0)]
    for d, _, _, _ in dirs:
        os.makedirs(os.path.join(src, d), exist_ok=True)
    for i, (p, mode, uid, gid, size) in enumerate(files):
        full = os.path.join(src, p)
        with open(full, 'wb') as f:
            f.write(bytes((i * 7 + j) % 251 for j in range(size)))
        os.chown(full, uid, gid)
        os.chmod(full, mode)
        os.utime(full, ns=(BASE_NS + i * 1111111111 + 1, BASE_NS + i * 1000000007 + 123456789))
    for i, (p, target, uid) in enumerate(links):
        full = os.path.join(src, p)
        os.symlink(target, full)
        os.lchown(full, uid, uid)
        os.utime(full, ns=(BASE_NS, BASE_NS + i * 3 + 987654321), follow_symlinks=False)
    for i, (d, mode, uid, gid) in enumerate(reversed(dirs)):  # children's times first
        full = os.path.join(src, d)
        os.chown(full, uid, gid)
        os.chmod(full, mode)
        os.utime(full, ns=(BASE_NS, BASE_NS + i * 77 + 555555555))
    os.chmod(src, 0o755)
    os.utime(src, ns=(BASE_NS, BASE_NS + 999999999))
    return [p for p, *_ in files] + [d for d, *_ in dirs] + [p for p, *_ in links]


def rsync(*args):
    r = subprocess.run(['rsync', *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f'rsync {" ".join(args)} failed ({r.returncode}): {r.stderr}'
    return r.stdout


def lstat_diff(src, dst, paths):
    """Differences in (type/mode, uid, gid, size, mtime_ns) between src and dst, as text lines."""
    out = []
    for p in paths:
        a, b = os.lstat(os.path.join(src, p)), os.lstat(os.path.join(dst, p))
        fa = (oct(a.st_mode), a.st_uid, a.st_gid, a.st_size if not stat.S_ISDIR(a.st_mode) else 0, a.st_mtime_ns)
        fb = (oct(b.st_mode), b.st_uid, b.st_gid, b.st_size if not stat.S_ISDIR(b.st_mode) else 0, b.st_mtime_ns)
        if fa != fb:
            out.append(f'{p}: src {fa} mount {fb}')
    return out


def check_objects(s3, bucket, src, paths):
    keys = s3_keys(s3, bucket)
    for p in paths:
        st = os.lstat(os.path.join(src, p))
        key = 'dst/' + p + ('/' if stat.S_ISDIR(st.st_mode) else '')
        assert key in keys, f'{key!r} not in S3; keys: {sorted(keys)}'
        meta = s3_meta(s3, bucket, key)
        assert_meta(meta, key, uid=st.st_uid, gid=st.st_gid)
        mode = int(meta['mode'])
        assert stat.S_IMODE(mode) == stat.S_IMODE(st.st_mode), f'{key}: mode {mode:o} vs {st.st_mode:o}'
        if not stat.S_ISDIR(st.st_mode):
            assert stat.S_IFMT(mode) == stat.S_IFMT(st.st_mode), f'{key}: type {mode:o} vs {st.st_mode:o}'
        if not stat.S_ISLNK(st.st_mode):  # symlink times are checked through the mount
            assert parse_s3fs_time(meta.get('mtime')) == st.st_mtime_ns, f'{key}: mtime {meta.get("mtime")}'
        if stat.S_ISREG(st.st_mode):
            with open(os.path.join(src, p), 'rb') as f:
                assert s3_body(s3, bucket, key) == f.read(), f'{key}: body differs'
        elif stat.S_ISLNK(st.st_mode):
            assert s3_body(s3, bucket, key) == os.readlink(os.path.join(src, p)).encode(), f'{key}: target'
    stray = {k for k in keys if '/.' in k or k.startswith('.')}
    assert not stray, f'rsync temp files left in S3: {stray}'


def test_rsync_roundtrip(mount, bucket, s3, tmp_path):
    src = str(tmp_path / 'src')
    paths = make_tree(src)
    m = mount(bucket)
    dst = os.path.join(m.path, 'dst')
    rsync('-a', '--numeric-ids', src + '/', dst + '/')
    diff = lstat_diff(src, dst, paths)
    assert not diff, 'mount differs from source right after rsync:\n' + '\n'.join(diff)
    out = rsync('-ani', '--numeric-ids', src + '/', dst + '/')
    assert out == '', f'second rsync wants to change things:\n{out}'

    m.unmount()
    check_objects(s3, bucket, src, paths)

    m.remount()
    diff = lstat_diff(src, dst, paths)
    assert not diff, 'mount differs from source after remount:\n' + '\n'.join(diff)
    out = rsync('-ani', '--numeric-ids', src + '/', dst + '/')
    assert out == '', f'after remount, rsync wants to change things:\n{out}'
    out = rsync('-anic', '--numeric-ids', src + '/', dst + '/')  # checksums: the data itself
    assert out == '', f'after remount, file contents differ:\n{out}'


def test_rsync_update_changed_file(mount, bucket, s3, tmp_path):
    """A second rsync after a change in the source transfers just that file, and S3 follows."""
    src = str(tmp_path / 'src')
    paths = make_tree(src)
    m = mount(bucket)
    dst = os.path.join(m.path, 'dst')
    rsync('-a', '--numeric-ids', src + '/', dst + '/')
    with open(os.path.join(src, 'exe'), 'r+b') as f:
        f.seek(30000)
        f.write(b'CHANGED')
    os.utime(os.path.join(src, 'exe'), ns=(BASE_NS, BASE_NS + 424242))
    os.chmod(os.path.join(src, 'a.txt'), 0o600)
    out = rsync('-ai', '--numeric-ids', src + '/', dst + '/')
    changed = sorted(line.split(' ', 1)[1] for line in out.splitlines() if line.strip())
    assert changed == ['a.txt', 'exe'], f'rsync itemized {out!r}'
    assert rsync('-ani', '--numeric-ids', src + '/', dst + '/') == ''
    m.unmount()
    check_objects(s3, bucket, src, paths)
