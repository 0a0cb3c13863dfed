"""Readahead (fs/readahead.c) and the kernel page cache, as the audit proxy and mincore(2)
see them: a sequential reader gets the blocks ahead of it fetched in parallel, in runs of up
to 8 MiB per GET, in a window that grows up to readahead= and resets on a random read; random reads fetch only their own
block; a file read again with its ETag unchanged comes from the kernel's page cache, and a
new version invalidates it."""
import ctypes
import mmap
import os
import re
import time

from helpers import reset_counters, wait_until

MiB = 1 << 20
libc = ctypes.CDLL(None, use_errno=True)


def get_ranges(proxy, key):
    """(first, last) block numbers (1 MiB) of each ranged GET of key seen so far."""
    out = []
    for r in proxy.requests():
        if r.op == 'GetObject' and r.key == key and r.range:
            m = re.match(r'bytes=(\d+)-(\d+)', r.range)
            if m:
                out.append((int(m.group(1)) // MiB, int(m.group(2)) // MiB))
    return out


def get_blocks(proxy, key):
    """Block numbers (1 MiB) the ranged GETs of key seen so far fetched (a readahead run
    fetches several with one GET), with repeats."""
    return [b for first, last in get_ranges(proxy, key) for b in range(first, last + 1)]


def test_sequential_read_fetches_ahead_in_a_growing_window(mount, bucket, s3, proxy):
    data = os.urandom(48 * MiB)
    s3.put_object(Bucket=bucket, Key='big', Body=data)
    m = mount(bucket, opts=['readahead=8M'])
    reset_counters(proxy)
    with open(os.path.join(m.path, 'big'), 'rb', buffering=0) as fh:
        got = bytearray()
        for _ in range(24):                       # 3 MiB in 128 KiB reads
            got += fh.read(128 << 10)
        assert got == data[:3 * MiB]
        ahead = wait_until(lambda: max(get_blocks(proxy, 'big'), default=0) >= 5, 10)
        blocks = get_blocks(proxy, 'big')
        assert ahead, f'nothing fetched ahead of a sequential reader: {sorted(blocks)}'
        # the window is at most readahead= (8 MiB) past what the kernel asked for, which
        # itself reads up to 1 MiB (+ a block in flight) ahead of the program
        assert max(blocks) <= 3 + 2 + 8, f'fetched past the window: {sorted(blocks)}'
        rest = fh.read()
    assert bytes(got) + rest == data
    blocks = get_blocks(proxy, 'big')
    assert sorted(blocks) == list(range(48)), f'each block once: {sorted(blocks)}'
    # what the window gains goes in runs (half the 8 MiB window here), one GET each, not
    # one GET per block: while the window grows (1, 2, 4 MiB) its blocks go in ones and
    # twos, up to 6 GETs depending on which of the kernel's reads arrive first; the other
    # ~42 blocks in batches of 4, the tail with the last batch
    gets = get_ranges(proxy, 'big')
    assert len(gets) <= 18, f'{len(gets)} GETs for 48 blocks: {sorted(gets)}'
    assert max(last - first + 1 for first, last in gets) >= 4, sorted(gets)


def test_random_reads_fetch_only_their_block(mount, bucket, s3, proxy):
    data = os.urandom(32 * MiB)
    s3.put_object(Bucket=bucket, Key='r', Body=data)
    m = mount(bucket)
    reset_counters(proxy)
    offsets = [27 * MiB + 5, 3 * MiB + 17, 19 * MiB, 11 * MiB + 999, 30 * MiB]
    fd = os.open(os.path.join(m.path, 'r'), os.O_RDONLY)
    try:
        for off in offsets:
            assert os.pread(fd, 4096, off) == data[off:off + 4096]
    finally:
        os.close(fd)
    time.sleep(0.5)                                # nothing arrives late either
    assert sorted(get_blocks(proxy, 'r')) == sorted(o // MiB for o in offsets)


def test_parallel_slices_of_one_file_each_read_ahead(mount, bucket, s3, proxy):
    from concurrent.futures import ThreadPoolExecutor
    data = os.urandom(32 * MiB)
    s3.put_object(Bucket=bucket, Key='s', Body=data)
    m = mount(bucket)
    reset_counters(proxy)

    def slice_(i):
        with open(os.path.join(m.path, 's'), 'rb', buffering=0) as fh:
            fh.seek(i * 8 * MiB)
            out = bytearray()
            while len(out) < 8 * MiB:
                out += fh.read(min(1 * MiB, 8 * MiB - len(out)))
            return bytes(out)

    with ThreadPoolExecutor(4) as ex:
        parts = list(ex.map(slice_, range(4)))
    assert b''.join(parts) == data
    blocks = get_blocks(proxy, 's')
    assert sorted(set(blocks)) == list(range(32))
    assert len(blocks) <= 32 + 4, f'blocks fetched twice: {sorted(blocks)}'


def resident_pages(path):
    """Pages of path in the kernel's page cache: mincore(2) of a fresh read-only mapping
    (which opens the file again, and faults nothing in)."""
    size = os.path.getsize(path)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            n = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
            vec = (ctypes.c_ubyte * n)()
            rc = libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec)
            assert rc == 0, os.strerror(ctypes.get_errno())
            return sum(v & 1 for v in vec)
        finally:
            libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    finally:
        os.close(fd)


def test_page_cache_kept_while_the_etag_is_unchanged(mount, bucket, s3):
    data = os.urandom(2 * MiB)
    s3.put_object(Bucket=bucket, Key='p', Body=data)
    m = mount(bucket)
    p = os.path.join(m.path, 'p')
    with open(p, 'rb') as fh:
        assert fh.read() == data
    n = 2 * MiB // mmap.PAGESIZE
    assert resident_pages(p) == n, 'the second open dropped the page cache'
    s3.put_object(Bucket=bucket, Key='p', Body=data[::-1])   # another writer
    time.sleep(0.3)       # past the 200 ms in which an open trusts the lookup just made
    assert resident_pages(p) == 0, 'a new version kept the old pages'
    with open(p, 'rb') as fh:
        assert fh.read() == data[::-1]
    with open(p, 'ab') as fh:                                  # this mount changes it
        fh.write(b'tail')
    with open(p, 'rb') as fh:
        assert fh.read() == data[::-1] + b'tail'
