"""Unmount and mount again: `fusermount3 -u` returns while the daemon still uploads, so a new
mount on the same cache_dir waits for it (saying so), one on a cache_dir a live mount holds
is refused at once, and `bucketfs -u MOUNTPOINT` unmounts and returns only when everything
is in S3, showing what is left while it waits."""
import os
import subprocess
import time

from conftest import bfs_bin, is_mounted
from helpers import s3_body, s3_keys

SLOW = ['consistency=writeback', 'upload_delay=60']        # nothing is uploaded before the unmount


def write_files(path, n, size=50_000):
    data = {}
    for i in range(n):
        data[f'f{i}'] = os.urandom(size)
        with open(os.path.join(path, f'f{i}'), 'wb') as f:
            f.write(data[f'f{i}'])
    return data


def test_bucketfs_u_waits_until_everything_is_in_s3(mount, bucket, s3, proxy):
    m = mount(bucket, opts=SLOW)
    data = write_files(m.path, 6)
    assert not s3_keys(s3, bucket), 'uploaded before the unmount: the test proves nothing'
    proxy.fault('delay', op='PutObject', count=None, seconds=1.0)
    t = time.monotonic()
    res = subprocess.run([bfs_bin(), '-u', m.path], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t
    assert res.returncode == 0, res.stderr
    assert not is_mounted(m.path)
    assert 'left to upload' in res.stderr, res.stderr
    assert 'everything is in S3' in res.stderr.splitlines()[-1], res.stderr
    assert took >= 1.0, f'returned after {took:.2f} s, before the (delayed) uploads'
    for name, body in data.items():          # in S3 the moment -u returned
        assert s3_body(s3, bucket, name) == body
    m.unmount()                               # the daemon is gone already


def test_bucketfs_u_on_something_else_fails_clearly(test_dir):
    d = test_dir / 'plain'
    d.mkdir()
    res = subprocess.run([bfs_bin(), '-u', str(d)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert res.stderr.count('\n') == 1 and 'no bucketfs daemon serves' in res.stderr


def test_mount_right_after_unmount_waits_for_the_previous_daemon(mount, bucket, s3, proxy):
    m = mount(bucket, opts=SLOW)
    data = write_files(m.path, 4)
    proxy.fault('delay', op='PutObject', count=None, seconds=1.0)
    res = subprocess.run(['fusermount3', '-u', m.path], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # the old daemon is still uploading; the same cache_dir is mounted again at once
    m2 = mount(bucket, opts=SLOW + [f'cache_dir={m.cache_dir}'])
    log = m2.log_text()
    assert 'waiting for bucketfs pid' in log and 'left to upload' in log, log
    proxy.clear_faults()
    for name, body in data.items():
        with open(os.path.join(m2.path, name), 'rb') as f:
            assert f.read() == body
        assert s3_body(s3, bucket, name) == body
    m.unmount()
    m2.unmount()


def test_cache_dir_of_a_live_mount_is_refused_at_once(mount, bucket):
    m = mount(bucket)
    t = time.monotonic()
    res = mount(bucket, opts=[f'cache_dir={m.cache_dir}'], check=False)
    assert res.returncode != 0
    assert time.monotonic() - t < 10, 'waited for a mount that is not going away'
    assert f'is in use by the bucketfs mount on {m.path}' in res.stderr, res.stderr


def test_lock_wait_bounds_the_wait(mount, bucket, proxy):
    m = mount(bucket, opts=SLOW)
    write_files(m.path, 2)
    f = proxy.fault('delay', op='PutObject', count=None, seconds=4.0)
    subprocess.run(['fusermount3', '-u', m.path], check=True)
    t = time.monotonic()
    res = mount(bucket, opts=[f'cache_dir={m.cache_dir}', 'lock_wait=1'], check=False)
    assert res.returncode != 0
    assert time.monotonic() - t < 8
    assert 'still held by pid' in res.stderr and 'lock_wait=1' in res.stderr, res.stderr
    proxy.clear_faults()
    assert f.hits >= 1
    m.unmount()
