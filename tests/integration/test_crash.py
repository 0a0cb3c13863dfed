"""kill -9 of the daemon at random points of a mixed workload, many rounds, then a remount
with the same cache_dir: every name shows its last acknowledged state (close, fsync, rename,
link or unlink returned 0) or the one operation in flight, whole; no conflict copy appears,
since nobody else writes the bucket; bucketfs-fsck finds the bucket clean.

BFS_CRASH_ROUNDS sets the number of writeback rounds (default 34; close-to-open runs half),
BFS_CRASH_SEED the workload (a failure prints the one it used), BFS_CRASH_DELAY a delay in
seconds the proxy adds to every request (a slower server moves the kill points: for a hunt)."""
import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import read_file, run_fsck, s3_body, s3_head, s3_keys, wait_until, write_file

# 34 writeback + 17 close-to-open rounds: 51 kills per server in make test (more with
# BFS_CRASH_ROUNDS=N for a longer hunt)
ROUNDS = int(os.environ.get('BFS_CRASH_ROUNDS', '34'))
WRITER = Path(__file__).with_name('crash_writer.py')
NAMES = [f'f{i}' for i in range(10)]


def expected(logpath):
    """name -> (last acknowledged sha or 'absent', set of acceptable shas)."""
    last, inflight = {}, {}
    for line in Path(logpath).read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue                     # a line cut by the crash: never acknowledged
        word, _op, name, sha = parts
        if word == 'begin':
            inflight[name] = sha
        else:
            last[name] = sha
            inflight.pop(name, None)
    out = {}
    for n in NAMES:
        ok = last.get(n, 'absent')
        out[n] = (ok, {ok} | ({inflight[n]} if n in inflight else set()))
    return out


def history(logpath, sha):
    """Where a content appeared in the workload log (for a failure message)."""
    hits = [f'line {i + 1}: {line}' for i, line in
            enumerate(Path(logpath).read_text().splitlines()) if sha in line]
    return '; '.join(hits[-6:]) or 'never written by the workload'


def seen(path):
    p = os.path.join(path, 'w')
    res = {}
    for n in NAMES:
        try:
            with open(os.path.join(p, n), 'rb') as f:
                res[n] = hashlib.sha256(f.read()).hexdigest()
        except FileNotFoundError:
            res[n] = 'absent'
    return res


@pytest.mark.timeout(1500)
@pytest.mark.parametrize('mode', ['writeback', 'close-to-open'])
def test_kill9_rounds_keep_the_last_acknowledged_state(mount, bucket, s3, proxy, test_dir, mode):
    """writeback keeps most changes in the journal when the crash comes (the harder case:
    pending renames, replaced names); close-to-open has them in S3, with a journal entry
    only for the upload in flight and for attribute changes: half the rounds."""
    seed = int(os.environ.get('BFS_CRASH_SEED', '0')) or random.randrange(1, 1 << 30)
    rnd = random.Random(seed)
    log = test_dir / 'ops.log'
    if os.environ.get('BFS_CRASH_DELAY'):
        proxy.fault('delay', count=None, seconds=float(os.environ['BFS_CRASH_DELAY']))
    m = mount(bucket, opts=[f'consistency={mode}'])
    os.mkdir(os.path.join(m.path, 'w'))
    flight_ok = 0
    for r in range(ROUNDS if mode == 'writeback' else max(1, ROUNDS // 2)):
        w = subprocess.Popen([sys.executable, str(WRITER), os.path.join(m.path, 'w'),
                              str(log), str(rnd.randrange(1 << 30))],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(rnd.uniform(0.2, 1.5))
        m.kill9()
        out, _ = w.communicate(timeout=60)
        assert w.returncode == 0, f'round {r}: the writer failed:\n{out.decode()}'
        m = m.remount()
        want = expected(log)
        got = seen(m.path)
        for n in NAMES:
            ack, acceptable = want[n]
            assert got[n] in acceptable, (
                f'round {r} (BFS_CRASH_SEED={seed}): {n} shows {got[n][:12]}, '
                f'last acknowledged {ack[:12]} '
                f'(acceptable {sorted(a[:12] for a in acceptable)}); that content: '
                f'{history(log, got[n])}; log:\n{m.log_text()[-3000:]}')
            flight_ok += got[n] != ack
        # settle the round: what was in flight is now what the name holds
        with open(log, 'a') as f:
            for n in NAMES:
                f.write(f'done settle {n} {got[n]}\n')
    m.unmount()
    conflicts = [k for k in s3_keys(s3, bucket) if 'bucketfs-conflict' in k]
    assert not conflicts, f'conflict copies with no other writer: {conflicts}'
    assert 'changed in S3 while our write was pending' not in m.log_text()
    # the bucket is consistent
    res = run_fsck(proxy, bucket, args=['--json', '--no-progress'], tmp=test_dir, timeout=300)
    assert res.returncode == 0, f'fsck: {res.returncode}\n{res.stdout}\n{res.stderr}'
    print(f'{mode}: kill -9 rounds done; {flight_ok} names showed the operation in flight')


def kill_and_remount(m, fd):
    """kill -9 of m's daemon while fd (a file in it) is open, then the same mount again."""
    m.kill9()
    try:
        os.close(fd)
    except OSError:
        pass                             # the daemon is gone
    return m.remount()


@pytest.mark.parametrize('change', ['inside', 'across-the-end', 'o-trunc'])
def test_writes_after_the_last_close_are_not_recovered(mount, bucket, s3, change):
    """A file whose upload is pending (its last close put it in the journal) is opened
    again and changed; the daemon dies before that close. The next mount shows the file as
    it was at its last close, whole: not the journal's size with some of the newer bytes
    in it (a write across the old end came back cut at the old size, a state that never
    existed)."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=3600'])
    p = os.path.join(m.path, 'f')
    old = os.urandom(5000)
    with open(p, 'wb') as f:
        f.write(old)                     # acknowledged: in the journal
    fd = os.open(p, os.O_WRONLY | (os.O_TRUNC if change == 'o-trunc' else 0))
    if change == 'inside':
        os.pwrite(fd, b'x' * 100, 1000)
    elif change == 'across-the-end':
        os.pwrite(fd, b'x' * 100, 4950)
    else:
        os.pwrite(fd, b'y' * 10, 0)
    m = kill_and_remount(m, fd)
    got = read_file(p)
    assert got == old, (f'{change}: {len(got)} bytes, not the 5000 of the last close '
                        f'(first difference at {next((i for i, (a, b) in enumerate(zip(got, old)) if a != b), None)}):\n'
                        f'{m.log_text()[-2000:]}')
    m.unmount()
    assert s3_body(s3, bucket, 'f') == old
    assert os.listdir(os.path.join(m.cache_dir, 'dirty')) == [], 'journal entries left'


def test_a_pending_file_changed_again_and_again_leaves_one_journal_entry(mount, bucket, s3):
    """The copies made for changes after a close (above) replace their entry at the next
    close: opened, changed and closed many times before its upload, a file has one entry,
    and S3 gets the last version."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=3600'])
    p = os.path.join(m.path, 'f')
    data = bytearray(os.urandom(70000))
    write_file(p, bytes(data))
    for i in range(20):
        off = (i * 7919) % len(data)
        with open(p, 'r+b') as f:
            f.seek(off)
            f.write(bytes([i]) * 300)
        data[off:off + 300] = bytes([i]) * 300
        assert len(os.listdir(os.path.join(m.cache_dir, 'dirty'))) == 1
    with open(p, 'r+b') as f:
        f.truncate(1000)                 # shrink: a copy of what is kept
    del data[1000:]
    assert read_file(p) == bytes(data)
    m.unmount()
    assert s3_body(s3, bucket, 'f') == bytes(data)
    assert os.listdir(os.path.join(m.cache_dir, 'dirty')) == [], 'journal entries left'


def test_unlink_of_an_open_file_is_not_undone_by_a_crash(mount, bucket, s3):
    """A file written (journal only), then removed while a reader still has it open: the data
    stays readable through that handle, and a kill -9 before the last close must not bring
    the name back from the journal at the next mount."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=3600'])
    p = os.path.join(m.path, 'doomed')
    data = os.urandom(70000)
    with open(p, 'wb') as f:
        f.write(data)
    fd = os.open(p, os.O_RDONLY)
    os.unlink(p)
    assert os.pread(fd, len(data) + 1, 0) == data, 'an open file stays readable'
    assert not os.path.exists(p)
    m = kill_and_remount(m, fd)
    assert not os.path.exists(p), f'the removed name came back:\n{m.log_text()[-2000:]}'
    m.unmount()
    assert s3_head(s3, bucket, 'doomed') is None, 'the removed file was uploaded at recovery'


def test_upload_due_during_unlink_does_not_bring_the_name_back(mount, bucket, s3, proxy):
    """The write-back timer fires while unlink's DELETE is on its way: that upload must not
    start, or its PUT, landing after the DELETE, recreates the removed object in S3."""
    m = mount(bucket, opts=['consistency=writeback', 'upload_delay=0.3'])
    p = os.path.join(m.path, 'raced')
    with open(p, 'wb') as f:
        f.write(b'first version\n')
    assert wait_until(lambda: s3_head(s3, bucket, 'raced') is not None, 10)
    proxy.fault('delay', op='DeleteObject', key='^raced$', seconds=1.5)
    put = proxy.fault('delay', op='PutObject', key='^raced$', seconds=3.0)
    with open(p, 'r+b') as f:
        f.write(b'second')                   # due for upload 0.3 s after this close
    os.unlink(p)                             # its DELETE reaches S3 after 1.5 s
    time.sleep(4.5)                          # any PUT started meanwhile has landed
    assert s3_head(s3, bucket, 'raced') is None, (
        f'the removed object is back in S3 (PUTs delayed: {put.hits}):\n{m.log_text()[-2000:]}')
    assert not os.path.exists(p)
    m.unmount()
    assert s3_head(s3, bucket, 'raced') is None
