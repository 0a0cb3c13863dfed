"""Close-to-open across mounts, the default: when close(), fsync(), mkdir, rmdir, unlink,
rename, symlink, link or mknod returns, S3 has the change, so another mount of the bucket
(another node) that then opens or looks up the name sees it at once. -o consistency=writeback
keeps the change in the local journal first and uploads it upload_delay after the close.

Two mounts of one bucket stand in for two nodes; boto3 checks what S3 holds right after each
call returns, with no waiting."""
import errno
import os
import stat

import pytest

from helpers import ops, reset_counters, s3_body, s3_head, s3_keys


def test_close_is_in_s3_and_seen_by_another_mount(mount, bucket, s3):
    a, b = mount(bucket), mount(bucket)
    os.listdir(b.path)                       # b's listing of the root is fresh: no 'f'
    data = os.urandom(300_000)
    with open(os.path.join(a.path, 'f'), 'wb') as fh:
        fh.write(data)
    assert s3_body(s3, bucket, 'f') == data  # at once, no upload_delay
    with open(os.path.join(b.path, 'f'), 'rb') as fh:
        assert fh.read() == data


def test_mkdir_then_create_from_another_mount(mount, bucket, s3):
    """rank 0 makes the directory, barrier, the other ranks create files in it."""
    a, b = mount(bucket), mount(bucket)
    assert os.listdir(b.path) == []          # b saw the root empty just now
    os.mkdir(os.path.join(a.path, 'run'))
    assert s3_keys(s3, bucket) == {'run/'}
    with open(os.path.join(b.path, 'run', 'rank1'), 'wb') as fh:
        fh.write(b'one')
    assert s3_body(s3, bucket, 'run/rank1') == b'one'
    # a's listing of run (known empty since its mkdir) may lag for stat_ttl; the name not
    assert os.stat(os.path.join(a.path, 'run', 'rank1')).st_size == 3


def test_rewrite_seen_whole_by_another_mount(mount, bucket, s3):
    """b held the old attributes (size) of f; its next open asks S3, and the kernel's cached
    size is dropped, so the longer new content reads whole."""
    a, b = mount(bucket), mount(bucket)
    pa, pb = os.path.join(a.path, 'f'), os.path.join(b.path, 'f')
    with open(pa, 'wb') as fh:
        fh.write(b'short')
    with open(pb, 'rb') as fh:
        assert fh.read() == b'short'
    new = os.urandom(70_000)
    with open(pa, 'wb') as fh:
        fh.write(new)
    with open(pb, 'rb') as fh:
        assert fh.read() == new
    assert os.stat(pb).st_size == len(new)


def test_namespace_calls_are_in_s3_when_they_return(mount, bucket, s3):
    a, b = mount(bucket), mount(bucket)
    os.listdir(b.path)
    os.symlink('target', os.path.join(a.path, 'ln'))
    assert 'ln' in s3_keys(s3, bucket)
    assert os.readlink(os.path.join(b.path, 'ln')) == 'target'
    os.mkfifo(os.path.join(a.path, 'fifo'))
    assert 'fifo' in s3_keys(s3, bucket)
    assert stat.S_ISFIFO(os.lstat(os.path.join(b.path, 'fifo')).st_mode)
    os.mknod(os.path.join(a.path, 'plain'), 0o600 | stat.S_IFREG)
    assert s3_body(s3, bucket, 'plain') == b''
    with open(os.path.join(a.path, 'f'), 'wb') as fh:
        fh.write(b'x' * 1000)
    os.rename(os.path.join(a.path, 'f'), os.path.join(a.path, 'g'))
    keys = s3_keys(s3, bucket)
    assert 'g' in keys and 'f' not in keys
    with open(os.path.join(b.path, 'g'), 'rb') as fh:
        assert fh.read() == b'x' * 1000
    os.link(os.path.join(a.path, 'g'), os.path.join(a.path, 'h'))
    assert os.stat(os.path.join(b.path, 'h')).st_nlink == 2
    os.unlink(os.path.join(a.path, 'plain'))
    assert 'plain' not in s3_keys(s3, bucket)
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(b.path, 'plain'))
    os.mkdir(os.path.join(a.path, 'd'))
    os.rmdir(os.path.join(a.path, 'd'))
    assert 'd/' not in s3_keys(s3, bucket)


def test_rename_of_a_file_still_open_for_writing_puts_it_first(mount, bucket, s3):
    m = mount(bucket)
    fd = os.open(os.path.join(m.path, 'w.tmp'), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b'partial')
        os.rename(os.path.join(m.path, 'w.tmp'), os.path.join(m.path, 'w'))
        assert s3_body(s3, bucket, 'w') == b'partial'
        assert 'w.tmp' not in s3_keys(s3, bucket)
        os.write(fd, b' and the rest')
    finally:
        os.close(fd)
    assert s3_body(s3, bucket, 'w') == b'partial and the rest'


def test_close_reports_the_failed_upload_and_loses_nothing(mount, bucket, s3, proxy):
    m = mount(bucket)
    proxy.fault('error', op='PutObject', count=None, status=500)
    with pytest.raises(OSError) as e:
        with open(os.path.join(m.path, 'f'), 'wb') as fh:
            fh.write(b'payload')
    assert e.value.errno == errno.EIO
    with pytest.raises(OSError):
        os.mkdir(os.path.join(m.path, 'd'))
    assert not os.path.exists(os.path.join(m.path, 'd')), 'a mkdir that failed left a directory'
    proxy.clear_faults()
    m.unmount()                              # the journal still had f: uploaded on the way out
    assert s3_body(s3, bucket, 'f') == b'payload'
    assert 'd/' not in s3_keys(s3, bucket)


def test_new_name_from_another_mount_is_hidden_at_most_neg_ttl(mount, bucket, s3):
    """b found 'late' missing just before a made it: the kernel trusts that for neg_ttl (1 s),
    never longer; a listing b holds never hides it."""
    import time
    a, b = mount(bucket), mount(bucket)
    os.listdir(b.path)
    pb = os.path.join(b.path, 'late')
    assert not os.path.exists(pb)
    with open(os.path.join(a.path, 'late'), 'wb') as fh:
        fh.write(b'here')
    made = time.monotonic()
    while not os.path.exists(pb):
        assert time.monotonic() - made < 1.5, 'a negative entry outlived neg_ttl'
        time.sleep(0.05)
    with open(pb, 'rb') as fh:
        assert fh.read() == b'here'
    # a name b never asked about is seen at once, whatever b's listing of the directory says
    with open(os.path.join(a.path, 'other'), 'wb') as fh:
        fh.write(b'x')
    assert os.path.exists(os.path.join(b.path, 'other'))


def test_neg_ttl_0_asks_every_time(mount, bucket, s3):
    a, b = mount(bucket), mount(bucket, opts=['neg_ttl=0'])
    pb = os.path.join(b.path, 'late')
    assert not os.path.exists(pb)
    with open(os.path.join(a.path, 'late'), 'wb') as fh:
        fh.write(b'here')
    assert os.path.exists(pb)


def test_writeback_mode_keeps_the_change_local_until_upload_delay(mount, bucket, s3, proxy):
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=3'])
    reset_counters(proxy)
    with open(os.path.join(m.path, 'f'), 'wb') as fh:
        fh.write(b'later')
    os.mkdir(os.path.join(m.path, 'd'))
    assert ops(proxy.stats(), 'PutObject') == 0
    assert s3_keys(s3, bucket) == set()
    m.unmount()
    assert s3_body(s3, bucket, 'f') == b'later'
    assert 'd/' in s3_keys(s3, bucket)


def test_replaced_object_reads_as_the_new_version_not_eio(mount, bucket, s3, proxy):
    """Another writer replaces an object this mount has open. A ranged GET with If-Match
    either fails (412, RGW) or, on a server that ignores the condition (s3rver), returns the
    new version's bytes: both read as "the object changed", never as corruption."""
    MiB = 1 << 20
    m = mount(bucket, opts=['block_size=64K', 'readahead=0'])   # nothing fetched ahead
    old, new = os.urandom(8 * MiB), os.urandom(8 * MiB)
    s3.put_object(Bucket=bucket, Key='obj', Body=old)
    with open(os.path.join(m.path, 'obj'), 'rb', buffering=0) as fh:
        assert fh.read(1000) == old[:1000]
        s3.put_object(Bucket=bucket, Key='obj', Body=new)
        fh.seek(6 * MiB)                 # past the kernel's readahead: never fetched yet
        got = fh.read(1000)              # a GET for the old ETag
    fetched = [r.range for r in proxy.requests() if r.op == 'GetObject']
    assert any(r and r.startswith(f'bytes={6 * MiB}-') for r in fetched), fetched
    assert got == new[6 * MiB:6 * MiB + 1000]
    with open(os.path.join(m.path, 'obj'), 'rb') as fh:
        assert fh.read() == new
    assert 'does not match' not in m.log_text()


def test_attribute_changes_wait_in_the_journal_and_fold_into_a_rename(mount, bucket, s3, proxy):
    """chmod/chown/utime of a file whose content is in S3 cost no request when they are made:
    they are durable in the journal, and the next rename's CopyObject stores them."""
    m = mount(bucket, opts=['upload_delay=30'])
    p = os.path.join(m.path, '.f.tmp')
    data = os.urandom(50_000)
    with open(p, 'wb') as fh:
        fh.write(data)
    reset_counters(proxy)
    os.chmod(p, 0o640)
    os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_123_456_789))
    assert ops(proxy.stats(), 'CopyObject', 'PutObject') == 0
    with open(p, 'rb') as fh:                # the content still reads from S3, whole
        assert fh.read() == data
    os.rename(p, os.path.join(m.path, 'f'))
    st = proxy.stats()
    assert ops(st, 'CopyObject') == 1 and ops(st, 'PutObject') == 0, st
    meta = s3_head(s3, bucket, 'f')['Metadata']
    assert int(meta['mode']) & 0o7777 == 0o640
    assert s3_body(s3, bucket, 'f') == data
    assert os.stat(os.path.join(m.path, 'f')).st_mtime_ns == 1_600_000_000_123_456_789


def test_attribute_change_then_write_and_truncate(mount, bucket, s3):
    m = mount(bucket, opts=['upload_delay=30'])
    p = os.path.join(m.path, 'f')
    with open(p, 'wb') as fh:
        fh.write(b'0123456789')
    os.chmod(p, 0o600)
    with open(p, 'ab') as fh:                # the content comes down to the journal first
        fh.write(b'abc')
    assert s3_body(s3, bucket, 'f') == b'0123456789abc'
    assert int(s3_head(s3, bucket, 'f')['Metadata']['mode']) & 0o7777 == 0o600
    os.chmod(p, 0o644)
    os.truncate(p, 4)
    with open(p, 'rb') as fh:
        assert fh.read() == b'0123'
    os.chmod(p, 0o604)
    os.unlink(p)
    assert s3_keys(s3, bucket) == set()


def chmod_then_kill9(mount, bucket, body, mode):
    """Writes f (in S3 at close), chmods it (in the journal only), kills the daemon."""
    m = mount(bucket, opts=['upload_delay=60'])
    p = os.path.join(m.path, 'f')
    with open(p, 'wb') as fh:
        fh.write(body)
    os.chmod(p, mode)
    m.kill9()
    return m


def test_attribute_change_survives_kill9(mount, bucket, s3):
    m = chmod_then_kill9(mount, bucket, b'content', 0o751).remount()
    assert int(s3_head(s3, bucket, 'f')['Metadata']['mode']) & 0o7777 == 0o751
    assert s3_body(s3, bucket, 'f') == b'content'
    assert 'recovered the attributes of f' in m.log_text()
    assert os.stat(os.path.join(m.path, 'f')).st_mode & 0o7777 == 0o751


def test_attribute_change_of_an_object_replaced_meanwhile_is_dropped(mount, bucket, s3):
    m = chmod_then_kill9(mount, bucket, b'ours', 0o700)
    s3.put_object(Bucket=bucket, Key='f', Body=b'theirs')
    m = m.remount()
    assert s3_body(s3, bucket, 'f') == b'theirs'
    assert 'the change is dropped' in m.log_text()
    assert not [k for k in s3_keys(s3, bucket) if 'conflict' in k]
