"""Request economy, counted by the audit proxy between bucketfs and the S3 server."""
import math
import os
import stat
import subprocess
import time

import pytest

from helpers import (DIR_TIMES_DELAY_S, assert_meta, dir_time_stores, fmt_stats, ops,
                     parse_s3fs_time, put_s3fs_object, request_count, reset_counters, s3_keys,
                     s3_meta)

N = 300


def test_ls_l_cost(mount, bucket, s3, proxy):
    """ls -l of a directory of N files: ceil(N/1000) LIST and at most N HEAD, issued in parallel;
    a second ls -l within stat_ttl costs nothing."""
    put_s3fs_object(s3, bucket, 'dir/', mode=stat.S_IFDIR | 0o755)
    expect = {}
    for i in range(N):
        uid = (0, 1000, 1001)[i % 3]
        mode = stat.S_IFREG | (0o600, 0o644, 0o755)[i % 3]
        mtime = 1600000000_000000000 + i * 1000000001
        put_s3fs_object(s3, bucket, f'dir/file{i:04d}', b'x' * (i % 17), mode=mode, uid=uid, gid=uid,
                        mtime_ns=mtime)
        expect[f'file{i:04d}'] = (mode, uid, uid, i % 17, mtime)
    m = mount(bucket, opts=['stat_ttl=60'])
    d = os.path.join(m.path, 'dir')
    os.stat(d)  # the directory's own lookup is not part of listing it
    reset_counters(proxy)

    names = os.listdir(d)
    got = {}
    for n in names:
        st = os.lstat(os.path.join(d, n))
        got[n] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
    first = proxy.stats()
    print(f'ls -l of {N} files: {fmt_stats(first)}')
    assert got == expect, 'ls -l shows other attributes than the metadata: ' + \
        str([(n, got.get(n), expect[n]) for n in sorted(expect) if got.get(n) != expect[n]][:5])

    lists = ops(first, 'ListObjectsV2', 'ListObjects')
    heads = ops(first, 'HeadObject')
    assert lists <= math.ceil(N / 1000), f'{lists} LIST requests for ls -l of {N} files: {fmt_stats(first)}'
    assert heads <= N, f'{heads} HEAD requests for ls -l of {N} files: {fmt_stats(first)}'
    assert request_count(first) == lists + heads, f'unexpected requests for ls -l: {fmt_stats(first)}'

    reset_counters(proxy)
    names2 = os.listdir(d)
    for n in names2:
        os.lstat(os.path.join(d, n))
    second = proxy.stats()
    assert sorted(names2) == sorted(names)
    assert request_count(second) == 0, f'second ls -l within stat_ttl=60 cost requests: {fmt_stats(second)}'
    m.unmount()
    assert len(s3_keys(s3, bucket, 'dir/')) == N + 1, 'ls -l changed the bucket'


def test_ls_l_heads_in_parallel(mount, bucket, s3, proxy):
    """With 50 ms per HEAD, ls -l of 200 files takes 10 s if the HEADs go one by one; bucketfs
    issues them in parallel while listing."""
    import time
    put_s3fs_object(s3, bucket, 'dir/', mode=stat.S_IFDIR | 0o755)
    for i in range(200):
        put_s3fs_object(s3, bucket, f'dir/f{i:03d}', b'', uid=1000)
    m = mount(bucket, opts=['stat_ttl=60'])
    d = os.path.join(m.path, 'dir')
    os.stat(d)
    reset_counters(proxy)
    proxy.fault('delay', op='HeadObject', seconds=0.05, count=None)
    t0 = time.monotonic()
    owners = {os.lstat(os.path.join(d, n)).st_uid for n in os.listdir(d)}
    took = time.monotonic() - t0
    assert owners == {1000}
    assert took < 5, f'ls -l of 200 files took {took:.1f} s with 50 ms HEADs: {fmt_stats(proxy.stats())}'


@pytest.mark.parametrize('mode', ['close-to-open', 'writeback'])
def test_rsync_put_economy(mount, bucket, s3, proxy, tmp_path, mode):
    """rsync -a of 100 small files. writeback: at most 1.2 PUT per file (directory markers
    count) and no COPY: rsync's temp file, chmod, chown, utimens and rename fold into one PUT
    per file. close-to-open (the default): the close puts the temp file, the attribute
    changes wait in the journal and ride along with the rename's CopyObject, then the
    DELETE: at most 3 requests per file (+ directories), no data uploaded twice."""
    src = tmp_path / 'src'
    files = {}
    for i in range(100):
        rel = f'sub{i % 4}/f{i:03d}.txt'
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f'file {i}\n'.encode() * (i + 1))
        os.chown(p, (0, 1000, 1001)[i % 3], 1000)
        os.chmod(p, (0o644, 0o600, 0o755)[i % 3])
        os.utime(p, ns=(1600000000_000000000, 1600000000_000000000 + i * 1000003))
        files[rel] = p
    m = mount(bucket, opts=[f'consistency={mode}'])
    reset_counters(proxy)
    t0 = time.monotonic()
    r = subprocess.run(['rsync', '-a', '--numeric-ids', f'{src}/', os.path.join(m.path, 'dst') + '/'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m.unmount()  # all uploads done
    elapsed = time.monotonic() - t0
    st = proxy.stats()
    print(f'rsync -a of 100 small files ({mode}): {fmt_stats(st)}')
    # the five directories' times, stored at most once per DIR_TIMES_DELAY_S each (HEAD +
    # CopyObject of the marker): not requests about the files
    dirs = dir_time_stores(proxy)
    assert dirs <= 5 * (elapsed // DIR_TIMES_DELAY_S + 1), f'{dirs} directory time stores in {elapsed:.1f} s'
    copies = ops(st, 'CopyObject') - dirs
    puts = ops(st, 'PutObject') + ops(st, 'CreateMultipartUpload')
    if mode == 'writeback':
        assert puts <= 120, f'{puts} PUTs for rsync of 100 small files (limit 120): {fmt_stats(st)}'
        assert copies == 0, f'rsync made CopyObject requests: {fmt_stats(st)}'
    else:
        changes = puts + copies + ops(st, 'DeleteObject', 'DeleteObjects')
        assert puts <= 120, f'{puts} PUTs: data uploaded twice? {fmt_stats(st)}'
        assert copies <= 100, f'attribute changes not folded: {fmt_stats(st)}'
        assert changes <= 320, f'{changes} changing requests for 100 files: {fmt_stats(st)}'
        # rsync looks names up before it makes them; close-to-open asks S3 about each name a
        # listing lacks (one LIST), since another mount may have made it
        assert request_count(st) - 2 * dirs <= 750, f'{request_count(st)} requests: {fmt_stats(st)}'
        assert st['bytes_up'] < 2 * sum(p.stat().st_size for p in files.values()) + 100_000

    keys = s3_keys(s3, bucket)
    assert {f'dst/{rel}' for rel in files} <= keys, 'files missing in S3'
    assert not [k for k in keys if '/.' in k], f'temp files left: {[k for k in keys if "/." in k]}'
    for rel, p in list(files.items())[:10]:
        lst = os.lstat(p)
        meta = s3_meta(s3, bucket, f'dst/{rel}')
        assert_meta(meta, rel, mode=lst.st_mode, uid=lst.st_uid, gid=lst.st_gid)
        assert parse_s3fs_time(meta['mtime']) == lst.st_mtime_ns, f'{rel}: mtime {meta["mtime"]}'


def test_listing_pagination(mount, bucket, s3, proxy):
    """A directory of 2100 entries is listed completely, with ceil(2100/1000) = 3 LIST requests."""
    from concurrent.futures import ThreadPoolExecutor
    names = [f'n{i:05d}' for i in range(2090)]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda n: s3.put_object(Bucket=bucket, Key=f'many/{n}', Body=b''), names))
        subdirs = [f'sub{i}' for i in range(10)]  # common prefixes spread over the pages
        list(ex.map(lambda n: s3.put_object(Bucket=bucket, Key=f'many/{n}/x', Body=b''), subdirs))
    m = mount(bucket, opts=['stat_ttl=60'])
    os.stat(os.path.join(m.path, 'many'))
    reset_counters(proxy)
    got = os.listdir(os.path.join(m.path, 'many'))
    st = proxy.stats()
    assert len(got) == len(set(got)), 'duplicate names in the listing'
    assert sorted(got) == sorted(names + subdirs), \
        f'listing has {len(got)} entries, expected {len(names) + len(subdirs)}'
    lists = ops(st, 'ListObjectsV2', 'ListObjects')
    assert lists == 3, f'{lists} LIST requests for 2100 entries (expected 3): {fmt_stats(st)}'
    assert ops(st, 'GetObject', 'PutObject') == 0, fmt_stats(st)
    m.unmount()
    assert len(s3_keys(s3, bucket, 'many/')) == 2100


def test_reads_fetch_only_what_is_needed(mount, bucket, s3, proxy):
    """Small reads in a 32 MiB object fetch blocks around them, not the whole object; reading
    the same bytes again costs no data transfer."""
    data = os.urandom(32 * 1024 * 1024)
    put_s3fs_object(s3, bucket, 'big', data)
    m = mount(bucket)
    p = os.path.join(m.path, 'big')
    os.stat(p)
    reset_counters(proxy)
    offsets = [5, 17 * 1024 * 1024 + 3, 31 * 1024 * 1024 + 999]
    with open(p, 'rb', buffering=0) as f:
        for off in offsets:
            f.seek(off)
            assert f.read(100) == data[off:off + 100], f'wrong bytes at {off}'
    first = proxy.stats()
    assert first['bytes_down'] <= 8 * 1024 * 1024, \
        f'3 reads of 100 bytes downloaded {first["bytes_down"]} bytes: {fmt_stats(first)}'
    reset_counters(proxy)
    with open(p, 'rb', buffering=0) as f:
        for off in offsets:
            f.seek(off)
            assert f.read(100) == data[off:off + 100], f'wrong bytes at {off} (second time)'
    second = proxy.stats()
    assert ops(second, 'GetObject') == 0, f'cached blocks fetched again: {fmt_stats(second)}'
    m.unmount()
