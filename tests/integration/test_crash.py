"""kill -9 of the daemon at random points of a mixed workload, many rounds, then a remount
with the same cache_dir: every name shows its last acknowledged state (close, fsync, rename,
link or unlink returned 0) or the one operation in flight, whole; no conflict copy appears,
since nobody else writes the bucket; bucketfs-fsck finds the bucket clean.

BFS_CRASH_ROUNDS sets the number of rounds (default 50)."""
import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run_fsck, s3_keys

ROUNDS = int(os.environ.get('BFS_CRASH_ROUNDS', '50'))
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
    rnd = random.Random(int(os.environ.get('BFS_CRASH_SEED', '0')) or None)
    log = test_dir / 'ops.log'
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
                f'round {r}: {n} shows {got[n][:12]}, last acknowledged {ack[:12]} '
                f'(acceptable {sorted(a[:12] for a in acceptable)}); log:\n{m.log_text()[-3000:]}')
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
