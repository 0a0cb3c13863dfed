"""A full cache disk: clean cached blocks make room for written data; when even that is not
enough, the writer gets ENOSPC and nothing written before is lost."""
import errno
import hashlib
import os
import subprocess

import pytest

from helpers import read_file, s3_body

MiB = 1 << 20


@pytest.fixture
def small_disk(test_dir):
    """A 64 MiB tmpfs to hold the cache directory."""
    d = test_dir / 'small'
    d.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(['umount', '-l', str(d)], check=False)


def test_full_cache_disk_evicts_then_reports_enospc(mount, bucket, s3, small_disk):
    cache = small_disk / 'cache'
    big = os.urandom(40 * MiB)
    s3.put_object(Bucket=bucket, Key='big', Body=big)
    m = mount(bucket, opts=[f'cache_dir={cache}', 'cache_size=48M'])

    # 40 MiB of cached blocks on a 64 MiB disk
    assert hashlib.sha256(read_file(os.path.join(m.path, 'big'))).digest() == \
        hashlib.sha256(big).digest()
    blocks = sum(f.stat().st_size for f in (cache / 'blocks').rglob('*') if f.is_file())
    assert blocks >= 30 * MiB, f'only {blocks} bytes of blocks cached'

    # 30 MiB written: does not fit beside the blocks, fits once clean blocks are dropped
    w1 = os.urandom(30 * MiB)
    with open(os.path.join(m.path, 'w1'), 'wb') as f:
        f.write(w1)
    blocks_after = sum(f.stat().st_size for f in (cache / 'blocks').rglob('*') if f.is_file())
    assert blocks_after < blocks, 'no cached block was dropped to make room'

    # 80 MiB cannot fit at all: the writer hears ENOSPC (at write or at close)
    with pytest.raises(OSError) as e:
        with open(os.path.join(m.path, 'w2'), 'wb') as f:
            for _ in range(80):
                f.write(os.urandom(MiB))
    assert e.value.errno == errno.ENOSPC, f'expected ENOSPC, got {e.value!r}'
    assert 'cache disk full' in open(m.log).read()

    m.unmount()
    # what was written and closed before is all in S3
    assert s3_body(s3, bucket, 'w1') == w1
    assert s3_body(s3, bucket, 'big') == big
