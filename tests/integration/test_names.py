"""Name and key length limits: a name is at most 255 bytes (statfs f_namemax, as s3fs and
local file systems), and its key at most S3's 1024 bytes. Anything longer is refused up front
with ENAMETOOLONG by every call that makes a name, so no data is accepted that S3 would then
refuse for ever."""
import errno
import os
import stat

import pytest

import conftest
from helpers import read_file, s3_body, s3_keys


def expect_enametoolong(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno == errno.ENAMETOOLONG, f'{fn.__name__}{args!r:.80}: {e.value}'


def test_names_over_255_bytes_are_refused_by_every_call(mount, bucket, s3):
    m = mount(bucket)
    assert os.statvfs(m.path).f_namemax == 255
    long = 'n' * 256
    src = os.path.join(m.path, 'src')
    with open(src, 'wb') as f:
        f.write(b'data')
    os.mkdir(os.path.join(m.path, 'd'))
    p = os.path.join(m.path, long)
    expect_enametoolong(open, p, 'wb')
    expect_enametoolong(os.mkdir, p)
    expect_enametoolong(os.symlink, 'src', p)
    expect_enametoolong(os.mkfifo, p)
    expect_enametoolong(os.link, src, p)
    expect_enametoolong(os.rename, src, p)
    expect_enametoolong(os.rename, os.path.join(m.path, 'd'), p)
    expect_enametoolong(os.stat, p)
    assert sorted(os.listdir(m.path)) == ['d', 'src']
    m.unmount()
    assert s3_keys(s3, bucket) == {'src', 'd/'}


def test_key_limit_counts_the_directories_above(mount, bucket, s3):
    """A name that fits 255 bytes but whose key would pass 1024 bytes is refused; a key of
    exactly 1024 bytes works and reaches S3."""
    m = mount(bucket)
    comp = 'c' * 200
    d = m.path
    for _ in range(4):                      # 4 * 201 = 804 bytes of key
        d = os.path.join(d, comp)
        os.mkdir(d)
    fits = 'f' * (1024 - 804)               # key of exactly 1024 bytes
    with open(os.path.join(d, fits), 'wb') as f:
        f.write(b'at the limit')
    expect_enametoolong(open, os.path.join(d, fits + 'x'), 'wb')
    expect_enametoolong(os.mkdir, os.path.join(d, 'g' * (1024 - 804)))   # + '/' = 1025
    os.mkdir(os.path.join(d, 'g' * (1023 - 804)))                        # + '/' = 1024
    expect_enametoolong(os.rename, os.path.join(d, fits), os.path.join(d, fits + 'y'))
    m.unmount()
    key = '/'.join([comp] * 4 + [fits])
    assert len(key.encode()) == 1024
    assert s3_body(s3, bucket, key) == b'at the limit'
    assert not [k for k in s3_keys(s3, bucket) if len(k.encode()) > 1024]
    # nothing was left in the journal for ever: the remount has nothing to recover
    m2 = m.remount()
    assert 'recovered' not in m2.log_text()
    assert 'kept in the journal' not in m2.log_text()


@pytest.mark.skipif(not conftest.on_rgw, reason='s3rver stores each key as a file name with '
                    'a suffix, so it cannot hold a 255-byte name (checked on Ceph RGW)')
def test_255_byte_names_round_trip(mount, bucket, s3):
    m = mount(bucket)
    names = ['a' * 255, 'é' * 127 + 'x', 'z' * 254 + '.']
    for n in names:
        with open(os.path.join(m.path, n), 'wb') as f:
            f.write(n.encode())
    os.mkdir(os.path.join(m.path, 'd' * 255))
    os.symlink('a' * 255, os.path.join(m.path, 'l' * 255))
    m.unmount()
    keys = s3_keys(s3, bucket)
    for n in names:
        assert n in keys and s3_body(s3, bucket, n) == n.encode()
    assert 'd' * 255 + '/' in keys
    m2 = mount(bucket)
    assert sorted(os.listdir(m2.path)) == sorted(names + ['d' * 255, 'l' * 255])
    for n in names:
        assert read_file(os.path.join(m2.path, n)) == n.encode()
    assert stat.S_ISDIR(os.stat(os.path.join(m2.path, 'd' * 255)).st_mode)
    assert os.readlink(os.path.join(m2.path, 'l' * 255)) == 'a' * 255
