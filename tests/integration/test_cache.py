"""The persistent block cache, metadata index and write-back journal (issue #3's acceptance),
with S3 requests counted by the audit proxy, and bin/bucketfs-cache.

Every test makes its own bucket and mount, so each runs alone (pytest -k NAME)."""
import hashlib
import os
import re
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import (sha256_file, fmt_stats, ops, put_s3fs_object, request_count, reset_counters, s3_body,
                     s3_head, wait_until)

REPO = Path(__file__).resolve().parents[2]
TOOL = Path(os.environ.get('BUCKETFS_BIN') or REPO / 'bin') / 'bucketfs-cache'
MiB = 1 << 20
BIG = 100 * MiB


# ---- helpers -----------------------------------------------------------------------------

def tool(*args):
    """Runs bin/bucketfs-cache; returns the CompletedProcess (text, both streams captured)."""
    if not os.access(TOOL, os.X_OK):
        pytest.fail(f'{TOOL} not found: run make first', pytrace=False)
    return subprocess.run([str(TOOL)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=120)


def tool_stats(cache_dir):
    """`bucketfs-cache --cache-dir DIR stats` as a dict of its "name value" lines."""
    r = tool('--cache-dir', cache_dir, 'stats')
    assert r.returncode == 0, f'stats exited {r.returncode}: {r.stderr}{r.stdout}'
    out = {}
    for line in r.stdout.splitlines():
        name, _, value = line.partition(' ')
        out[name] = value.strip()
    for name in ('blocks', 'bytes', 'dirty_entries', 'dirty_bytes', 'hit_ratio', 'in_use'):
        assert name in out, f'stats output lacks {name}:\n{r.stdout}'
    return out


def num(stats, name):
    m = re.match(r'(\d+)', stats.get(name, ''))
    assert m, f'{name} is not a number in stats: {stats}'
    return int(m.group(1))


def random_bytes(n, seed):
    """n random bytes (seed only names the call site in tracebacks)."""
    return os.urandom(n)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def read_through(path):
    """Reads a whole file in 1 MiB pieces (a fresh open: close-to-open applies) and returns
    its SHA-256. The kernel's page cache of the file is dropped first: what is measured is
    bucketfs's own cache."""
    h = hashlib.sha256()
    with open(path, 'rb', buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        while True:
            b = f.read(MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def block_files(cache_dir):
    root = Path(cache_dir) / 'blocks'
    return [p for p in root.rglob('*') if p.is_file() and not p.name.endswith('.tmp')]


def block_bytes(cache_dir):
    return sum(p.stat().st_size for p in block_files(cache_dir))


def live_hits(cache_dir, at_least, timeout=6):
    """Waits until the mount's stats file (rewritten every 2 s) reports at least `at_least` hits;
    returns the last stats read."""
    last = {}

    def enough():
        nonlocal last
        last = tool_stats(cache_dir)
        return 'hits' in last and num(last, 'hits') >= at_least
    wait_until(enough, timeout, 0.5)
    return last


# ---- listings after a remount: the metadata index --------------------------------------

NFILES = 2000


def ls_ln(path):
    """`ls -ln` of path: {name: (mode string, uid, gid, size)}."""
    r = subprocess.run(['ls', '-ln', path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines()[1:]:  # "total N" first
        f = line.split(None, 8)
        out[f[8]] = (f[0], int(f[2]), int(f[3]), int(f[4]))
    return out


def listed_dir(mount, bucket, s3):
    """A directory (with its "dir/" marker, as s3fs and bucketfs make them) of NFILES files
    written by boto3 with s3fs metadata, mounted with stat_ttl=60 and listed once with ls -l
    (which fills the metadata index); returns (mount, dir path, that listing)."""
    put_s3fs_object(s3, bucket, 'dir/', mode=stat.S_IFDIR | 0o755)
    mtime = 1700000000_000000000

    def put(i):
        put_s3fs_object(s3, bucket, f'dir/f{i:04d}', b'x' * (i % 7), mode=stat.S_IFREG | 0o640,
                        uid=1000, gid=1000, mtime_ns=mtime)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(put, range(NFILES)))
    m = mount(bucket, opts=['stat_ttl=60'])
    d = os.path.join(m.path, 'dir')
    first = ls_ln(d)
    assert len(first) == NFILES, f'{len(first)} entries listed, {NFILES} expected'
    assert all(v == ('-rw-r-----', 1000, 1000, i % 7) for i, v in
               enumerate(first[k] for k in sorted(first))), 'first ls -l shows wrong attributes'
    return m, d, first


def test_ls_l_after_remount_costs_lists_only(mount, bucket, s3, proxy):
    """ls -l of 2,000 files after a remount: 2 LISTs and no HEAD (the attributes come from the
    metadata index, matched by ETag, LastModified and Size)."""
    m, d, first = listed_dir(mount, bucket, s3)
    m.remount()
    os.stat(d)  # the directory's own lookup is not part of listing it
    reset_counters(proxy)
    again = ls_ln(d)
    st = proxy.stats()
    assert again == first, 'ls -l after remount differs from before'
    assert ops(st, 'HeadObject') == 0, \
        f'ls -l of {NFILES} unchanged files after remount made HEADs: {fmt_stats(st)}'
    assert ops(st, 'ListObjectsV2', 'ListObjects') == 2, \
        f'ls -l of {NFILES} files after remount: expected 2 LISTs: {fmt_stats(st)}'
    assert request_count(st) == 2, f'unexpected requests: {fmt_stats(st)}'


def test_ls_l_after_chmod_by_another_client_heads_only_changed(mount, bucket, s3, proxy,
                                                               s3server):
    """After 3 of 2,000 files are chmod'ed through boto3 (CopyObject onto itself, metadata
    REPLACE: same ETag, new LastModified), ls -l after a remount makes exactly 3 HEADs and
    shows the new modes."""
    m, d, first = listed_dir(mount, bucket, s3)
    m.unmount()
    time.sleep(1.1)  # LastModified must be able to differ
    changed = {'f0007': 0o600, 'f1000': 0o755, 'f1999': 0o604}
    for name, mode in changed.items():
        key = f'dir/{name}'
        head = s3_head(s3, bucket, key)
        meta = dict(head['Metadata'], mode=str(stat.S_IFREG | mode))
        s3.copy_object(Bucket=bucket, Key=key, CopySource={'Bucket': bucket, 'Key': key},
                       Metadata=meta, MetadataDirective='REPLACE',
                       ContentType='application/octet-stream')
        # AWS S3 gives the copy a new LastModified; s3rver 3.7.1 takes LastModified from its
        # data file's mtime, which a copy onto itself leaves alone. Do what S3 does.
        if s3server.kind == 's3rver':
            data_file = Path(s3server.data_dir) / bucket / 'dir' / f'{name}._S3rver_object'
            assert data_file.is_file(), f's3rver layout changed: no {data_file}'
            os.utime(data_file)
        after = s3_head(s3, bucket, key)
        assert after['ETag'] == head['ETag'], 'metadata copy changed the ETag'
        assert after['LastModified'] != head['LastModified'], 'copy kept LastModified'
    m.remount()
    os.stat(d)
    reset_counters(proxy)
    third = ls_ln(d)
    st = proxy.stats()
    for name, mode in changed.items():
        assert third[name][0] == stat.filemode(stat.S_IFREG | mode), \
            f'{name}: ls -l shows {third[name][0]} after chmod {mode:o} through boto3'
    assert {k: v for k, v in third.items() if k not in changed} == \
        {k: v for k, v in first.items() if k not in changed}
    assert ops(st, 'HeadObject') == 3, \
        f'3 objects changed metadata: expected exactly 3 HEADs: {fmt_stats(st)}'
    heads = sorted(r.key for r in proxy.requests() if r.op == 'HeadObject')
    assert heads == sorted(f'dir/{n}' for n in changed), f'HEADs of other objects: {heads}'
    assert ops(st, 'ListObjectsV2', 'ListObjects') == 2, f'expected 2 LISTs: {fmt_stats(st)}'


# ---- block cache: repeated reads, remount, replacement ----------------------------------

def test_reread_costs_no_get_also_after_remount(mount, bucket, s3, proxy):
    """A second read of a 100 MiB file costs zero GETs (served from cached blocks, which the
    hit counter shows); after a remount, zero GETs; after the object is replaced through
    boto3, the new content is read."""
    data = random_bytes(BIG, 'v1')
    s3.put_object(Bucket=bucket, Key='big', Body=data)
    m = mount(bucket)
    p = os.path.join(m.path, 'big')
    assert read_through(p) == sha(data)
    first = proxy.stats()
    assert first.get('bytes_down', 0) >= BIG, f'cold read did not download: {fmt_stats(first)}'

    reset_counters(proxy)
    assert read_through(p) == sha(data)
    st = proxy.stats()
    assert ops(st, 'GetObject') == 0, f'second read made GETs: {fmt_stats(st)}'
    assert st.get('bytes_down', 0) == 0, f'second read downloaded: {fmt_stats(st)}'
    s = live_hits(m.cache_dir, 100)
    assert num(s, 'hits') >= 100, f'second read of 100 blocks not counted as cache hits: {s}'

    m.remount()
    reset_counters(proxy)
    assert read_through(p) == sha(data)
    st = proxy.stats()
    assert ops(st, 'GetObject') == 0, f'read after remount made GETs: {fmt_stats(st)}'
    assert st.get('bytes_down', 0) == 0, f'read after remount downloaded: {fmt_stats(st)}'

    new = random_bytes(BIG, 'v2')
    s3.put_object(Bucket=bucket, Key='big', Body=new)
    reset_counters(proxy)
    assert read_through(p) == sha(new), 'old cached content served after the object changed'
    st = proxy.stats()
    assert ops(st, 'GetObject') >= 1, fmt_stats(st)


def test_cache_ttl_revalidates_without_download(mount, bucket, s3, proxy):
    """cache_ttl=2: after 3 s an unchanged object costs at most one request (HEAD or a
    conditional GET) and downloads nothing."""
    data = random_bytes(8 * MiB, 'ttl')
    s3.put_object(Bucket=bucket, Key='obj', Body=data)
    m = mount(bucket, opts=['cache_ttl=2'])
    p = os.path.join(m.path, 'obj')
    assert read_through(p) == sha(data)
    time.sleep(3)
    reset_counters(proxy)
    assert read_through(p) == sha(data)
    st = proxy.stats()
    assert request_count(st) <= 1, f'revalidation after cache_ttl cost more: {fmt_stats(st)}'
    assert ops(st, 'HeadObject') + ops(st, 'GetObject') == request_count(st), fmt_stats(st)
    assert st.get('bytes_down', 0) == 0, f'unchanged object downloaded again: {fmt_stats(st)}'
    s = live_hits(m.cache_dir, 8)
    assert num(s, 'hits') >= 8, f'revalidated blocks not served from the cache: {s}'


def test_cache_size_cap(mount, bucket, s3, proxy):
    """cache_size=32M: reading 100 MiB keeps the cached block bytes under the cap."""
    cap = 32 * MiB
    data = random_bytes(BIG, 'cap')
    s3.put_object(Bucket=bucket, Key='big', Body=data)
    m = mount(bucket, opts=['cache_size=32M'])
    assert read_through(os.path.join(m.path, 'big')) == sha(data)
    # eviction runs in the background (inline beyond 125% of the cap): give it a moment
    wait_until(lambda: num(tool_stats(m.cache_dir), 'bytes') <= cap, 10, 0.5)
    s = tool_stats(m.cache_dir)
    assert s['in_use'].startswith('yes'), s
    assert 0 < num(s, 'bytes') <= cap, f'cached bytes {num(s, "bytes")} over the 32M cap: {s}'
    on_disk = block_bytes(m.cache_dir)
    assert on_disk <= cap, f'{on_disk} bytes of block files on disk, cap {cap}'
    du = subprocess.run(['du', '-sk', os.path.join(m.cache_dir, 'blocks')], capture_output=True,
                        text=True)
    kib = int(du.stdout.split()[0])
    assert kib <= cap // 1024 + 256 * 4 + 64, f'du of blocks/: {kib} KiB (cap 32 MiB + dirs)'
    assert num(s, 'bytes') == on_disk, 'stats bytes differ from the block files on disk'


def test_corrupt_block_is_refetched(mount, bucket, s3, proxy):
    """A block file changed on disk (one byte flipped) is detected by its checksum at the next
    read after a remount: dropped, fetched again (a GET), correct bytes read, the log names
    the file."""
    data = random_bytes(8 * MiB, 'corrupt')
    s3.put_object(Bucket=bucket, Key='obj', Body=data)
    m = mount(bucket)
    p = os.path.join(m.path, 'obj')
    assert read_through(p) == sha(data)
    m.unmount()
    files = sorted(block_files(m.cache_dir))
    assert len(files) == 8, f'{len(files)} block files for an 8 MiB object, expected 8'
    victim = files[3]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xff
    victim.write_bytes(bytes(raw))

    m.remount()
    reset_counters(proxy)
    assert read_through(p) == sha(data), 'corrupt cached block served'
    st = proxy.stats()
    assert ops(st, 'GetObject') >= 1, f'corrupt block not fetched again: {fmt_stats(st)}'
    assert st.get('bytes_down', 0) < len(data), \
        f'more than the bad block was downloaded again: {fmt_stats(st)}'
    assert str(victim) in m.log_text(), f'the log does not name the corrupt block {victim}'


# ---- write-back journal: kill -9 during the upload ---------------------------------------

def test_kill9_during_upload_then_remount_uploads(mount, bucket, s3, proxy):
    """kill -9 right after close() of a 50 MiB file (upload_delay=0.05: the upload is running or
    about to), then a remount with the same cache_dir: the full, correct object ends up in S3
    and the journal is empty."""
    data = random_bytes(50 * MiB, 'kill9')
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=0.05'])
    with open(os.path.join(m.path, 'f50'), 'wb') as f:
        f.write(data)
    m.kill9()
    assert num(tool_stats(m.cache_dir), 'dirty_entries') == 1, 'close() left no journal entry'

    m.remount()

    def uploaded():
        h = s3_head(s3, bucket, 'f50')
        return h is not None and h['ContentLength'] == len(data)
    assert wait_until(uploaded, 60, 0.5), 'journal entry not uploaded after remount'
    assert wait_until(lambda: num(tool_stats(m.cache_dir), 'dirty_entries') == 0, 30, 0.5), \
        f'journal not empty after the recovered upload: {tool_stats(m.cache_dir)}'
    assert sha(s3_body(s3, bucket, 'f50')) == sha(data), 'recovered object has wrong content'
    assert read_through(os.path.join(m.path, 'f50')) == sha(data)
    m.unmount()
    s = tool_stats(m.cache_dir)
    assert num(s, 'dirty_entries') == 0 and num(s, 'dirty_bytes') == 0, s


# ---- bin/bucketfs-cache -------------------------------------------------------------------

def test_tool_while_mounted_and_after(mount, bucket, s3, proxy):
    """stats and verify work read-only while mounted (with the live hit ratio); prune and clear
    refuse; after unmount verify finds and drops a corrupt block, prune --to and --older-than,
    clear."""
    data = random_bytes(8 * MiB, 'tool')
    s3.put_object(Bucket=bucket, Key='obj', Body=data)
    m = mount(bucket)
    p = os.path.join(m.path, 'obj')
    assert read_through(p) == sha(data)
    assert read_through(p) == sha(data)
    s = live_hits(m.cache_dir, 8)
    assert s['in_use'].startswith('yes'), s
    assert num(s, 'blocks') == 8 and num(s, 'bytes') == len(data), s
    # 16 block reads; the first read's blocks were fetched ahead (readahead), or waited for
    assert num(s, 'hits') >= 8 and num(s, 'hits') + num(s, 'misses') >= 16, s
    assert s['hit_ratio'].startswith('50.0%') or re.match(r'\d+\.\d%', s['hit_ratio']), s

    r = tool('--cache-dir', m.cache_dir, 'verify')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'verified 8 blocks: 0 bad' in r.stdout, r.stdout
    for cmd in (['prune', '--to', '0'], ['clear']):
        r = tool('--cache-dir', m.cache_dir, *cmd)
        assert r.returncode == 2, f'{cmd} while mounted exited {r.returncode}: {r.stdout}'
        assert 'cache in use by a mounted bucketfs; unmount first' in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert len(block_files(m.cache_dir)) == 8, 'a refused command changed the cache'
    m.unmount()

    s = tool_stats(m.cache_dir)
    assert s['in_use'] == 'no' and 'not mounted' in s['hit_ratio'], s
    victim = sorted(block_files(m.cache_dir))[5]
    raw = bytearray(victim.read_bytes())
    raw[100] ^= 1
    victim.write_bytes(bytes(raw))
    r = tool('--cache-dir', m.cache_dir, 'verify')
    assert r.returncode == 1, f'verify of a corrupt block exited {r.returncode}: {r.stdout}'
    assert str(victim) in r.stdout and 'dropped' in r.stdout, r.stdout
    assert 'verified 8 blocks: 1 bad' in r.stdout, r.stdout
    r = tool('--cache-dir', m.cache_dir, 'verify')
    assert r.returncode == 0 and 'verified 7 blocks: 0 bad' in r.stdout, r.stdout + r.stderr
    assert not victim.exists(), 'verify did not drop the corrupt block file'

    r = tool('--cache-dir', m.cache_dir, 'prune', '--older-than', '1h')
    assert r.returncode == 0 and 'pruned 0 blocks' in r.stdout, r.stdout + r.stderr
    r = tool('--cache-dir', m.cache_dir, 'prune', '--to', '3M')
    assert r.returncode == 0, r.stdout + r.stderr
    s = tool_stats(m.cache_dir)
    assert num(s, 'bytes') <= 3 * MiB and num(s, 'blocks') == len(block_files(m.cache_dir)), s
    r = tool('--cache-dir', m.cache_dir, 'clear')
    assert r.returncode == 0, r.stdout + r.stderr
    s = tool_stats(m.cache_dir)
    assert num(s, 'blocks') == 0 and block_files(m.cache_dir) == [], s

    # the cache still works after all that: a read fetches and is correct
    m.remount()
    reset_counters(proxy)
    assert read_through(p) == sha(data)
    assert ops(proxy.stats(), 'GetObject') >= 1


def test_tool_shows_progress(mount, bucket, s3):
    """verify and prune of a large cache show how far they are on stderr (--progress; on a
    terminal always): a line when they start, at most one a second, and the last one."""
    data = random_bytes(600 * 16384, 'progress')
    s3.put_object(Bucket=bucket, Key='obj', Body=data)
    m = mount(bucket, opts=['block_size=16K'])
    assert read_through(os.path.join(m.path, 'obj')) == sha(data)
    m.unmount()
    assert len(block_files(m.cache_dir)) == 600
    r = tool('--cache-dir', m.cache_dir, 'verify')
    assert r.returncode == 0 and r.stderr == '', r.stderr  # not a terminal: quiet
    r = tool('--cache-dir', m.cache_dir, 'verify', '--progress')
    assert r.returncode == 0 and 'verified 600 blocks: 0 bad' in r.stdout, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == 'verify: 0/600 blocks (0%)' and lines[-1] == \
        'verify: 600/600 blocks (100%)', lines
    assert all(re.fullmatch(r'verify: \d+/600 blocks \(\d+%\)', x) for x in lines), lines
    r = tool('--cache-dir', m.cache_dir, 'prune', '--to', '0', '--progress')
    assert r.returncode == 0 and 'pruned 600 blocks' in r.stdout, r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == 'prune: 0/600 blocks (0%)' and lines[-1] == \
        'prune: 600/600 blocks (100%)', lines
    assert block_files(m.cache_dir) == []


def test_tool_clear_keeps_dirty_unless_discard(mount, bucket, s3, proxy):
    """Journal data survives `clear`; `clear --discard-dirty` drops it (never uploaded)."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=3600'])
    with open(os.path.join(m.path, 'pending'), 'wb') as f:
        f.write(b'not uploaded yet\n' * 1000)
    m.kill9()
    s = tool_stats(m.cache_dir)
    assert num(s, 'dirty_entries') == 1 and num(s, 'dirty_bytes') == 17000, s

    r = tool('--cache-dir', m.cache_dir, 'clear')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'kept 1 dirty entries' in r.stdout, r.stdout
    assert num(tool_stats(m.cache_dir), 'dirty_entries') == 1
    r = tool('--cache-dir', m.cache_dir, 'prune', '--to', '0')
    assert r.returncode == 0 and num(tool_stats(m.cache_dir), 'dirty_entries') == 1

    r = tool('--cache-dir', m.cache_dir, 'clear', '--discard-dirty')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'discarded 1 dirty entries' in r.stdout, r.stdout
    s = tool_stats(m.cache_dir)
    assert num(s, 'dirty_entries') == 0 and num(s, 'dirty_bytes') == 0, s
    assert os.listdir(os.path.join(m.cache_dir, 'dirty')) == []
    m.remount()
    m.unmount()
    assert s3_head(s3, bucket, 'pending') is None, 'discarded journal data was uploaded'


def test_tool_usage_errors(tmp_path, mount, bucket):
    """One-line errors and exit status 2 for usage errors and a missing cache."""
    cases = [
        ([], 'missing --cache-dir'),
        (['--cache-dir', tmp_path], 'usage'),
        (['--cache-dir', tmp_path, 'frob'], "unknown command 'frob'"),
        (['--cache-dir', tmp_path, 'stats'], 'no bucketfs cache there'),
        (['--cache-dir', tmp_path, 'prune'], 'prune needs --older-than'),
        (['--cache-dir', tmp_path, 'prune', '--to', 'lots'], 'not a size'),
        (['--cache-dir', tmp_path, 'prune', '--older-than', '3y'], 'not a duration'),
        (['--cache-dir', tmp_path, 'stats', '--discard-dirty'], 'option of clear'),
        (['--cache-dir', tmp_path, 'stats', '--bogus'], "unknown option '--bogus'"),
    ]
    for args, msg in cases:
        r = tool(*args)
        assert r.returncode == 2, f'{args}: exit {r.returncode}, expected 2'
        assert msg in r.stderr, f'{args}: stderr {r.stderr!r} lacks {msg!r}'
        assert len(r.stderr.strip().splitlines()) == 1, f'{args}: not one line: {r.stderr!r}'
    assert not (tmp_path / 'lock').exists() and not (tmp_path / 'index').exists(), \
        'the tool created a cache where there was none'
    r = tool('--help')
    assert r.returncode == 0 and 'SYNOPSIS' in r.stdout and '--discard-dirty' in r.stdout

    # BUCKET -o cache_dir= finds the same cache as the mount
    m = mount(bucket)
    m.unmount()
    r = tool(bucket, '-o', f'endpoint=http://127.0.0.1:1,cache_dir={m.cache_dir}', 'stats')
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r'^cache_dir\s+' + re.escape(m.cache_dir) + '$', r.stdout, re.M), r.stdout
