"""rename(2) of files and directories: the result in S3 and through the mount, and that a
directory rename is done server-side (CopyObject), with no file data passing through the client."""
import errno
import os
import stat
import time

import pytest

from helpers import (assert_meta, fmt_stats, ops, put_s3fs_object, read_file, reset_counters,
                     s3_body, s3_keys, s3_meta, wait_until, write_file)


def test_rename_file(mount, bucket, s3):
    put_s3fs_object(s3, bucket, 'a', b'from s3', mode=stat.S_IFREG | 0o600, uid=1000, gid=1001,
                    mtime_ns=1600000000_000000042)
    m = mount(bucket)
    os.rename(os.path.join(m.path, 'a'), os.path.join(m.path, 'b'))
    assert os.listdir(m.path) == ['b']
    st = os.stat(os.path.join(m.path, 'b'))
    assert (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns) == \
        (stat.S_IFREG | 0o600, 1000, 1001, 1600000000_000000042), 'rename changed attributes'
    assert read_file(os.path.join(m.path, 'b')) == b'from s3'
    m.unmount()
    assert s3_keys(s3, bucket) == {'b'}
    assert s3_body(s3, bucket, 'b') == b'from s3'
    assert_meta(s3_meta(s3, bucket, 'b'), 'b', mode=stat.S_IFREG | 0o600, uid=1000, gid=1001,
                mtime_ns=1600000000_000000042)
    m.remount()
    assert read_file(os.path.join(m.path, 'b')) == b'from s3'


def test_rename_onto_existing(mount, bucket, s3):
    put_s3fs_object(s3, bucket, 'src', b'new contents')
    put_s3fs_object(s3, bucket, 'dst', b'old contents, longer than the new')
    m = mount(bucket)
    write_file(os.path.join(m.path, 'local-src'), b'written here')
    write_file(os.path.join(m.path, 'local-dst'), b'to be replaced')
    os.rename(os.path.join(m.path, 'src'), os.path.join(m.path, 'dst'))
    os.rename(os.path.join(m.path, 'local-src'), os.path.join(m.path, 'local-dst'))
    assert sorted(os.listdir(m.path)) == ['dst', 'local-dst']
    assert read_file(os.path.join(m.path, 'dst')) == b'new contents'
    assert read_file(os.path.join(m.path, 'local-dst')) == b'written here'
    m.unmount()
    assert s3_keys(s3, bucket) == {'dst', 'local-dst'}
    assert s3_body(s3, bucket, 'dst') == b'new contents'
    assert s3_body(s3, bucket, 'local-dst') == b'written here'
    m.remount()
    assert read_file(os.path.join(m.path, 'dst')) == b'new contents'


def test_rename_dirty_file_into_other_dir(mount, bucket, s3):
    """A file renamed right after it was written (upload maybe still pending) ends up complete
    under its new name only."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=30'])
    os.mkdir(os.path.join(m.path, 'x'))
    os.mkdir(os.path.join(m.path, 'y'))
    data = os.urandom(1024 * 1024 + 11)
    write_file(os.path.join(m.path, 'x', 'f'), data)
    os.rename(os.path.join(m.path, 'x', 'f'), os.path.join(m.path, 'y', 'g'))
    with open(os.path.join(m.path, 'y', 'g'), 'r+b') as f:  # and keep writing under the new name
        f.seek(0, os.SEEK_END)
        f.write(b'tail')
    assert read_file(os.path.join(m.path, 'y', 'g')) == data + b'tail'
    assert os.listdir(os.path.join(m.path, 'x')) == []
    m.unmount()
    assert s3_keys(s3, bucket) == {'x/', 'y/', 'y/g'}
    assert s3_body(s3, bucket, 'y/g') == data + b'tail'


def test_name_left_by_a_pending_rename_keeps_what_comes_there_next(mount, bucket, s3):
    """writeback: a file in S3 is changed (its upload pending) and renamed, and a new file
    is renamed onto the name it left. The old object at that name goes with the rename:
    the first file's upload, landing later, must not delete the new file (it did)."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=0.3'])
    f1, f3, tmp = (os.path.join(m.path, n) for n in ('f1', 'f3', 'tmp'))
    write_file(f1, b'A' * 1000)
    assert wait_until(lambda: 'f1' in s3_keys(s3, bucket), 10)
    time.sleep(0.5)                          # uploaded, and its journal entry gone
    fd = os.open(f1, os.O_RDWR)
    try:
        os.pwrite(fd, b'B' * 10, 0)          # pending, and its upload waits for the close
        os.rename(f1, f3)
        assert not os.path.exists(f1)
        assert 'f1' not in s3_keys(s3, bucket), 'the old object stayed at the name it left'
        write_file(tmp, b'C' * 500)
        os.rename(tmp, f1)
        assert wait_until(lambda: s3_keys(s3, bucket) >= {'f1'} and
                          len(s3_body(s3, bucket, 'f1')) == 500, 10)
    finally:
        os.close(fd)                         # f3's upload goes now
    assert wait_until(lambda: 'f3' in s3_keys(s3, bucket), 10)
    time.sleep(0.5)
    assert read_file(f1) == b'C' * 500
    m.unmount()
    assert s3_keys(s3, bucket) == {'f1', 'f3'}
    assert s3_body(s3, bucket, 'f1') == b'C' * 500, 'the upload of f3 removed the new f1'
    assert s3_body(s3, bucket, 'f3') == b'B' * 10 + b'A' * 990


def test_rename_while_open(mount, bucket, s3):
    """Writes through a descriptor opened before the rename land in the renamed file."""
    m = mount(bucket)
    a, b = os.path.join(m.path, 'a'), os.path.join(m.path, 'b')
    with open(a, 'wb') as f:
        f.write(b'first half, ')
        f.flush()
        os.rename(a, b)
        f.write(b'second half')
    assert os.listdir(m.path) == ['b']
    assert read_file(b) == b'first half, second half'
    m.unmount()
    assert s3_keys(s3, bucket) == {'b'}
    assert s3_body(s3, bucket, 'b') == b'first half, second half'


def test_rename_directory_with_pending_files(mount, bucket, s3):
    """A directory renamed while its files are not uploaded yet: all of them end up, complete,
    under the new name only."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=30'])
    os.makedirs(os.path.join(m.path, 'src', 'deep'))
    files = {f'f{i}': os.urandom(i * 50000) for i in range(5)}
    files['deep/g'] = b'in a subdirectory'
    for k, v in files.items():
        write_file(os.path.join(m.path, 'src', k), v)
    os.rename(os.path.join(m.path, 'src'), os.path.join(m.path, 'dst'))
    for k, v in files.items():
        assert read_file(os.path.join(m.path, 'dst', k)) == v, k
    m.unmount()
    keys = s3_keys(s3, bucket)
    assert not [k for k in keys if k.startswith('src/')], f'objects under src/: {sorted(keys)}'
    for k, v in files.items():
        assert s3_body(s3, bucket, f'dst/{k}') == v, f'dst/{k}'


def test_rename_onto_itself(mount, bucket, s3):
    m = mount(bucket)
    p = os.path.join(m.path, 'same')
    write_file(p, b'still here')
    os.rename(p, p)
    assert read_file(p) == b'still here'
    m.unmount()
    assert s3_body(s3, bucket, 'same') == b'still here'


def test_rename_errors(mount, bucket, s3):
    m = mount(bucket)
    os.makedirs(os.path.join(m.path, 'full', 'sub'))
    os.mkdir(os.path.join(m.path, 'empty'))
    write_file(os.path.join(m.path, 'file'), b'f')
    with pytest.raises(OSError) as e:
        os.rename(os.path.join(m.path, 'empty'), os.path.join(m.path, 'full'))
    assert e.value.errno in (errno.ENOTEMPTY, errno.EEXIST), e.value
    with pytest.raises(OSError) as e:
        os.rename(os.path.join(m.path, 'file'), os.path.join(m.path, 'empty'))
    assert e.value.errno == errno.EISDIR, e.value
    with pytest.raises(OSError) as e:
        os.rename(os.path.join(m.path, 'empty'), os.path.join(m.path, 'file'))
    assert e.value.errno == errno.ENOTDIR, e.value
    with pytest.raises(FileNotFoundError):
        os.rename(os.path.join(m.path, 'nothere'), os.path.join(m.path, 'x'))
    os.rename(os.path.join(m.path, 'empty'), os.path.join(m.path, 'full', 'sub', 'moved'))
    os.mkdir(os.path.join(m.path, 'target'))  # a directory may replace an empty one
    write_file(os.path.join(m.path, 'full', 'sub', 'moved', 'payload'), b'p')
    os.rename(os.path.join(m.path, 'full', 'sub', 'moved'), os.path.join(m.path, 'target'))
    assert os.listdir(os.path.join(m.path, 'target')) == ['payload']
    m.unmount()
    assert s3_keys(s3, bucket) == {'file', 'full/', 'full/sub/', 'target/', 'target/payload'}


N_FILES = 300
FILE_SIZE = 16 * 1024


def test_rename_directory_server_side(mount, bucket, s3, proxy):
    """A directory with 300 files (plus a subdirectory, a symlink, an implicit subdirectory) is
    renamed with CopyObject only: no GetObject, no PutObject of file data."""
    put_s3fs_object(s3, bucket, 'old/', mode=stat.S_IFDIR | 0o755)
    put_s3fs_object(s3, bucket, 'old/sub/', mode=stat.S_IFDIR | 0o700, uid=1000)
    put_s3fs_object(s3, bucket, 'old/sub/inner', b'inner' * 10, mode=stat.S_IFREG | 0o640, uid=1001,
                    mtime_ns=1234567890_000000001)
    put_s3fs_object(s3, bucket, 'old/link', b'sub/inner', mode=stat.S_IFLNK | 0o777)
    s3.put_object(Bucket=bucket, Key='old/implicit/x', Body=b'no marker above me')
    bodies = {}
    for i in range(N_FILES):
        bodies[f'f{i:03d}'] = bytes([i % 256]) * FILE_SIZE
        put_s3fs_object(s3, bucket, f'old/f{i:03d}', bodies[f'f{i:03d}'], uid=i % 3 and 1000)
    old_keys = s3_keys(s3, bucket, 'old/')
    s3.put_object(Bucket=bucket, Key='older', Body=b'a sibling whose name starts like old')

    m = mount(bucket)
    reset_counters(proxy)
    os.rename(os.path.join(m.path, 'old'), os.path.join(m.path, 'new'))
    assert sorted(os.listdir(m.path)) == ['new', 'older']
    m.unmount()
    st, log = proxy.stats(), proxy.requests()

    keys = s3_keys(s3, bucket)
    assert not {k for k in keys if k.startswith('old/')}, \
        f'objects left under old/: {sorted(k for k in keys if k.startswith("old/"))[:10]}'
    expected = {'new/' + k[len('old/'):] for k in old_keys}
    missing = expected - keys
    assert not missing, f'{len(missing)} objects missing under new/: {sorted(missing)[:10]}'
    assert 'older' in keys and s3_body(s3, bucket, 'older') == b'a sibling whose name starts like old'
    for name in ('f000', 'f137', f'f{N_FILES - 1:03d}'):
        assert s3_body(s3, bucket, f'new/{name}') == bodies[name], f'new/{name} body'
    assert_meta(s3_meta(s3, bucket, 'new/sub/inner'), 'new/sub/inner', mode=stat.S_IFREG | 0o640,
                uid=1001, mtime_ns=1234567890_000000001)
    assert_meta(s3_meta(s3, bucket, 'new/f001'), 'new/f001', uid=1000)

    data_bytes = N_FILES * FILE_SIZE
    copies = ops(st, 'CopyObject')
    assert N_FILES <= copies <= N_FILES + 10, f'CopyObject {copies}, expected about {N_FILES}: {fmt_stats(st)}'
    assert ops(st, 'GetObject') == 0, f'file data read through the client: {fmt_stats(st)}'
    assert ops(st, 'PutObject', 'UploadPart') <= 3, f'file data written through the client: {fmt_stats(st)}'
    put_bytes = sum(r.bytes_up for r in log if r.op in ('PutObject', 'UploadPart'))
    assert put_bytes == 0, f'{put_bytes} bytes of data PUT for a rename: {fmt_stats(st)}'
    assert st.get('bytes_up', 0) < data_bytes / 20, \
        f'{st.get("bytes_up")} bytes uploaded for a rename of {data_bytes} bytes: {fmt_stats(st)}'

    m.remount()
    d = os.path.join(m.path, 'new')
    assert len(os.listdir(d)) == N_FILES + 3  # 300 files, sub, link, implicit
    assert read_file(os.path.join(d, 'f042')) == bodies['f042']
    assert os.readlink(os.path.join(d, 'link')) == 'sub/inner'
    assert read_file(os.path.join(d, 'implicit', 'x')) == b'no marker above me'
    st = os.stat(os.path.join(d, 'sub'))
    assert (st.st_mode, st.st_uid) == (stat.S_IFDIR | 0o700, 1000)
    assert not os.path.exists(os.path.join(m.path, 'old'))


@pytest.mark.parametrize('mode', ['close-to-open', 'writeback'])
def test_file_replaced_by_rename_stays_readable_through_an_open_handle(mount, bucket, s3, mode):
    """POSIX: rename(tmp, name) replaces the name, not the file a reader already has open.
    With writeback the old file is still in the journal only: a crash after the rename must
    not bring it back."""
    m = mount(bucket, opts=[f'consistency={mode}', 'upload_delay=3600'])
    p, tmp = os.path.join(m.path, 'cfg'), os.path.join(m.path, 'cfg.tmp')
    old, new = os.urandom(300000), os.urandom(5000)
    with open(p, 'wb') as f:
        f.write(old)
    fd = os.open(p, os.O_RDONLY)
    try:
        with open(tmp, 'wb') as f:
            f.write(new)
        os.rename(tmp, p)
        assert os.pread(fd, len(old) + 1, 0) == old, 'the open handle reads the replaced file'
        with open(p, 'rb') as f:
            assert f.read() == new
        if mode == 'writeback':
            m.kill9()
            m = m.remount()
            with open(p, 'rb') as f:
                assert f.read() == new, f'after the crash:\n{m.log_text()[-2000:]}'
        else:
            assert s3_body(s3, bucket, 'cfg') == new
    finally:
        try:
            os.close(fd)
        except OSError:
            pass                             # the daemon was killed
    m.unmount()
    assert s3_body(s3, bucket, 'cfg') == new
    assert not [k for k in s3_keys(s3, bucket) if k.startswith('cfg') and k != 'cfg']
