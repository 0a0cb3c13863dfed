"""Logging, the slow-call log (-o slow_ms=) and live statistics (bin/bucketfs-stat).
docs/stats.md describes the log lines and the statistics these tests check."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN_DIR
from helpers import reset_counters, run_as

FAIL_RE = re.compile(r'bucketfs error: s3 (\w+) failed: status=(\d+) code=(\S+) '
                     r'request_id=(\S+) attempts=(\d+) error=(\w+)(?: \(.*\))? key=(.*)$')
RETRY_RE = re.compile(r'bucketfs debug: s3 (\w+) failed, retrying: status=(\d+) code=(\S+) '
                      r'request_id=(\S+) attempts=(\d+) error=(\w+)(?: \(.*\))? key=(.*)$')
RETRIES = 5          # s3_config.retries default: 6 attempts in all


def log_lines(m, pattern):
    return [mt for mt in (pattern.search(line) for line in m.log_text().splitlines()) if mt]


def close_after_write(path, data):
    """Writes data to a new file; the errno close() gives (0: none)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, data)
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


@pytest.mark.parametrize('level', ['info', 'debug'])
def test_failed_request_is_logged_once(mount, bucket, proxy, level):
    m = mount(bucket, opts=[f'log_level={level}'])
    reset_counters(proxy)
    put = proxy.fault('error', op='PutObject', key='^failing$', status=500, count=RETRIES + 1)
    assert close_after_write(os.path.join(m.path, 'failing'), b'x' * 100) == errno.EIO
    assert put.hits == RETRIES + 1
    ids = [r for r in proxy.requests() if r.op == 'PutObject' and r.key == 'failing']
    assert len(ids) == RETRIES + 1 and all(r.status == 500 for r in ids)

    fails = [f for f in log_lines(m, FAIL_RE) if f.group(7) == 'failing']
    assert len(fails) == 1, m.log_text()
    op, status, code, rid, attempts, err, _ = fails[0].groups()
    assert (op, status, code, attempts, err) == ('PutObject', '500', 'InternalError',
                                                 str(RETRIES + 1), 'EIO')
    assert re.fullmatch(r'[0-9A-F]{16}', rid), rid      # the proxy's x-amz-request-id
    retries = [r for r in log_lines(m, RETRY_RE) if r.group(7) == 'failing']
    if level == 'debug':
        assert [r.group(5) for r in retries] == [str(i) for i in range(1, RETRIES + 1)]
        assert all(r.group(1, 2, 3) == ('PutObject', '500', 'InternalError') for r in retries)
        assert len({r.group(4) for r in retries} | {rid}) == RETRIES + 1, 'request ids repeat'
    else:
        assert retries == []
    for secret in ('S3RVER', 'Signature=', 'Authorization'):
        assert secret not in m.log_text().split('\n', 1)[1], f'{secret} in the log'


# ---------------------------------------------------------------- slow_ms --

SLOW_RE = re.compile(r' bucketfs info: slow (fuse|s3) (\S+) (\d+\.\d{9}) (.*)$')


def slow_lines(m, offset=0):
    """(kind, name, seconds text, rest) of every slow-call line after byte offset of the log."""
    with open(m.log, 'rb') as f:
        f.seek(offset)
        text = f.read().decode(errors='replace')
    return [mt.groups() for mt in (SLOW_RE.search(line) for line in text.splitlines()) if mt]


def workload(root):
    """A little of everything: mkdir, create+write, stat, read, list, rename, unlink."""
    d = os.path.join(root, 'd')
    os.mkdir(d)
    for i in range(3):
        with open(os.path.join(d, f'f{i}'), 'wb') as f:
            f.write(b'%d' % i * 1000)
    os.stat(os.path.join(d, 'f1'))
    with open(os.path.join(d, 'f1'), 'rb') as f:
        assert f.read() == b'1' * 1000
    assert sorted(os.listdir(d)) == ['f0', 'f1', 'f2']
    os.rename(os.path.join(d, 'f0'), os.path.join(d, 'g0'))
    os.unlink(os.path.join(d, 'f2'))


def test_slow_ms_0_logs_every_call_in_the_documented_format(mount, bucket, proxy):
    m = mount(bucket, opts=['slow_ms=0'])
    reset_counters(proxy)
    offset = os.path.getsize(m.log)
    workload(m.path)
    with open(os.path.join(m.path, 'd', 'f1'), 'rb') as f:   # removed while open
        os.unlink(os.path.join(m.path, 'd', 'f1'))
        assert f.read() == b'1' * 1000
    m.unmount()                            # every request is over, and logged
    lines = slow_lines(m, offset)
    assert lines, m.log_text()

    # every S3 request the proxy saw is one line, with its operation's name
    seen = {}
    for kind, name, _, rest in lines:
        if kind == 's3':
            assert re.fullmatch(r'status=\d+ (key|bucket)=.+', rest), rest
            seen[name] = seen.get(name, 0) + 1
    counts = {k: v for k, v in proxy.stats().items() if not k.startswith('bytes_') and v}
    assert seen == counts
    assert seen.get('PutObject', 0) >= 3 and seen.get('CopyObject', 0) >= 1
    s3_keys = {rest.split(' key=', 1)[1] for kind, _, _, rest in lines
               if kind == 's3' and ' key=' in rest}
    assert {'d/', 'd/f0', 'd/f1', 'd/g0'} <= s3_keys

    # the FUSE calls, each with the path it works on
    fuse = {(name, rest) for kind, name, _, rest in lines if kind == 'fuse'}
    for want in [('MKDIR', 'path=d'), ('CREATE', 'path=d/f0'), ('WRITE', 'path=d/f1'),
                 ('FLUSH', 'path=d/f2'), ('OPEN', 'path=d/f1'), ('READ', 'path=d/f1'),
                 ('READDIRPLUS', 'path=d'), ('RENAME', 'path=d/f0 newpath=d/g0'),
                 ('UNLINK', 'path=d/f2')]:
        assert want in fuse, f'{want} not logged; got {sorted(fuse)}'
    assert any(name == 'LOOKUP' for name, _ in fuse)
    assert ('UNLINK', 'path=d/f1') in fuse
    assert any(name == 'RELEASE' and re.fullmatch(r'path=ino:\d+', rest) for name, rest in fuse), \
        'the last close of a removed file does not show its inode'

    # durations: seconds with exactly 9 decimals, in field 8 of a line, so `sort -n` sorts
    secs = [float(s) for _, _, s, _ in lines]
    assert all(0 <= s < 60 for s in secs)
    assert any(s > 0 for s in secs)
    raw = [line for line in m.log_text().splitlines()[-100000:] if SLOW_RE.search(line)]
    out = subprocess.run(['sort', '-n', '-k8,8'], input='\n'.join(raw) + '\n', text=True,
                         capture_output=True, check=True).stdout.splitlines()
    sorted_secs = [float(line.split()[7]) for line in out]
    assert sorted_secs == sorted(float(line.split()[7]) for line in raw)
    assert len(out) == len(raw)


def test_large_slow_ms_logs_nothing(mount, bucket, proxy):
    m = mount(bucket, opts=['slow_ms=600000'])
    workload(m.path)
    m.unmount()
    assert proxy.stats().get('PutObject', 0) >= 3
    assert slow_lines(m) == []
    assert ' slow ' not in m.log_text()


# ---------------------------------------------------------------- bucketfs-stat --

STAT_BIN = str(BIN_DIR / 'bucketfs-stat')
S3_OPS = ('GetObject', 'HeadObject', 'PutObject', 'CopyObject', 'DeleteObject', 'DeleteObjects',
          'ListObjectsV2', 'CreateMultipartUpload', 'UploadPart', 'UploadPartCopy',
          'CompleteMultipartUpload', 'AbortMultipartUpload', 'ListMultipartUploads')
MiB = 1 << 20


def bfs_stat(m, *args, check=True):
    r = subprocess.run([STAT_BIN, *args, m.path], capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, f'bucketfs-stat {args}: {r.returncode} {r.stderr}'
    return r


def stat_json(m):
    return json.loads(bfs_stat(m, '--json').stdout)


def s3_counts(doc):
    """{operation: requests} of a --json document, operations with requests only."""
    return {op: v['requests'] for op, v in doc['s3']['operations'].items() if v['requests']}


def delta(after, before):
    out = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    return {k: v for k, v in out.items() if v}


def proxy_counts(proxy):
    return {k: v for k, v in proxy.stats().items() if not k.startswith('bytes_') and v}


def read_through(path):
    """A fresh open that reads the whole file, the kernel's page cache of it dropped first."""
    with open(path, 'rb', buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return f.read()


def test_new_files_are_counted_exactly_as_the_proxy_counts_them(mount, bucket, s3, proxy):
    m = mount(bucket)                                    # close-to-open: close() uploads
    os.listdir(m.path)
    before = stat_json(m)
    reset_counters(proxy)
    sizes = [1, 100, 4096, 10000, 65536, 333333]
    for i, n in enumerate(sizes):
        with open(os.path.join(m.path, f'new{i}'), 'wb') as f:
            f.write(os.urandom(n))
    after = stat_json(m)
    got = delta(s3_counts(after), s3_counts(before))
    assert got.get('PutObject') == len(sizes), got
    assert got == proxy_counts(proxy), (got, proxy.stats())
    up = after['s3']['bytes_up'] - before['s3']['bytes_up']
    assert up == sum(sizes) == proxy.stats()['bytes_up']
    down = after['s3']['bytes_down'] - before['s3']['bytes_down']
    assert down == proxy.stats()['bytes_down']
    assert after['s3']['errors'] == before['s3']['errors']
    assert after['dirty'] == {'entries': 0, 'bytes': 0, 'uploads_queued': 0,
                              'uploads_running': 0, 'streamed_parts': 0}
    assert sorted(k['Key'] for k in s3.list_objects_v2(Bucket=bucket)['Contents']) == \
        [f'new{i}' for i in range(len(sizes))]
    lat = after['s3']['operations']['PutObject']
    assert 0 < lat['p50_seconds'] <= lat['p90_seconds'] <= lat['p99_seconds'] <= \
        lat['max_seconds'] <= lat['sum_seconds']
    assert after['fuse']['CREATE']['calls'] - before['fuse'].get('CREATE', {}).get('calls', 0) \
        == len(sizes)


def test_second_read_is_served_by_the_cache(mount, bucket, s3, proxy):
    data = os.urandom(3 * MiB)
    s3.put_object(Bucket=bucket, Key='big', Body=data)
    m = mount(bucket, opts=['readahead=0'])
    os.stat(os.path.join(m.path, 'big'))
    s0 = stat_json(m)
    reset_counters(proxy)
    assert read_through(os.path.join(m.path, 'big')) == data
    s1 = stat_json(m)
    # three 1 MiB blocks, one GET each; a read waiting for a block in flight counts a miss
    # too, and the kernel's later reads within a block just fetched are hits
    assert s1['cache']['misses'] - s0['cache']['misses'] >= 3
    gets = delta(s3_counts(s1), s3_counts(s0)).get('GetObject', 0)
    assert gets == 3 == proxy.stats()['GetObject']
    assert s1['s3']['bytes_down'] - s0['s3']['bytes_down'] >= len(data)
    reset_counters(proxy)
    assert read_through(os.path.join(m.path, 'big')) == data
    s2 = stat_json(m)
    assert s2['cache']['hits'] - s1['cache']['hits'] >= 3
    assert s2['cache']['misses'] == s1['cache']['misses']
    assert delta(s3_counts(s2), s3_counts(s1)).get('GetObject', 0) == 0
    assert proxy.stats().get('GetObject', 0) == 0
    assert s2['cache']['blocks'] >= 3 and s2['cache']['bytes'] >= len(data)


def test_readahead_window_is_shown(mount, bucket, s3):
    data = os.urandom(8 * MiB)
    s3.put_object(Bucket=bucket, Key='seq', Body=data)
    m = mount(bucket, opts=['readahead=4M'])
    assert stat_json(m)['readahead']['window_max_bytes'] == 4 * MiB
    assert read_through(os.path.join(m.path, 'seq')) == data
    ra = stat_json(m)['readahead']
    assert MiB <= ra['window_bytes'] <= 4 * MiB, ra
    assert ra['prefetched_blocks'] >= 1, ra
    m2 = mount(bucket, opts=['readahead=0'])
    assert stat_json(m2)['readahead'] == {'window_bytes': 0, 'window_max_bytes': 0,
                                          'queued_blocks': 0, 'prefetched_blocks': 0}


def test_failed_requests_and_retries_are_counted(mount, bucket, proxy):
    m = mount(bucket)
    before = stat_json(m)['s3']['operations']['PutObject']
    reset_counters(proxy)
    proxy.fault('error', op='PutObject', status=500, count=RETRIES + 1)
    assert close_after_write(os.path.join(m.path, 'f'), b'data') == errno.EIO
    after = stat_json(m)['s3']['operations']['PutObject']
    assert after['requests'] - before['requests'] == RETRIES + 1 == proxy.stats()['PutObject']
    assert after['retries'] - before['retries'] == RETRIES
    assert after['errors'] - before['errors'] == 1
    # a retried request that then succeeds: retries, no error
    proxy.fault('error', op='PutObject', status=503, count=2)
    with open(os.path.join(m.path, 'g'), 'wb') as f:
        f.write(b'data')
    last = stat_json(m)['s3']['operations']['PutObject']
    assert last['errors'] == after['errors']
    assert last['retries'] - after['retries'] >= 2


PROM_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
                         r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (\S+)$')


def test_json_prom_and_table_output(mount, bucket, proxy):
    m = mount(bucket)
    for i in range(3):
        with open(os.path.join(m.path, f'p{i}'), 'wb') as f:
            f.write(b'x' * 10)
    doc = stat_json(m)
    assert doc['version'] == 1 and doc['bucket'] == bucket and doc['prefix'] == ''
    assert doc['mountpoint'] == os.path.realpath(m.path) and doc['pid'] == m.pid
    assert doc['uptime_seconds'] > 0
    assert set(doc['s3']['operations']) == set(S3_OPS) | {'Other'}
    assert doc['s3']['requests'] == sum(v['requests'] for v in doc['s3']['operations'].values())
    assert doc['s3']['operations']['PutObject']['requests'] >= 3
    assert doc['s3']['operations']['UploadPart']['p50_seconds'] is None

    prom = bfs_stat(m, '--prom').stdout
    families, typed = {}, {}
    for line in prom.splitlines():
        if line.startswith('# HELP '):
            families[line.split()[2]] = True
            continue
        if line.startswith('# TYPE '):
            _, _, name, kind = line.split()
            assert kind in ('counter', 'gauge', 'summary'), line
            assert name in families, f'TYPE before HELP: {line}'
            typed[name] = kind
            continue
        mt = PROM_SAMPLE.match(line)
        assert mt, f'not a sample line: {line!r}'
        name = mt.group(1)
        base = re.sub(r'_(sum|count)$', '', name) if name not in typed else name
        assert base in typed, f'{name} without TYPE'
        if mt.group(7) != 'NaN':
            float(mt.group(7))
        if typed[base] == 'counter':
            assert name.endswith('_total'), name
    assert typed['bucketfs_s3_requests_total'] == 'counter'
    assert typed['bucketfs_s3_request_duration_seconds'] == 'summary'
    assert typed['bucketfs_cache_hits_total'] == 'counter'
    assert typed['bucketfs_dirty_bytes'] == 'gauge'
    puts = doc['s3']['operations']['PutObject']['requests']
    lines = set(prom.splitlines())
    assert f'bucketfs_s3_requests_total{{operation="PutObject"}} {puts}' in lines
    assert any(line.startswith('bucketfs_s3_request_duration_seconds{operation="PutObject",'
                               'quantile="0.99"} ') for line in lines)
    assert f'bucketfs_s3_request_duration_seconds_count{{operation="PutObject"}} {puts}' in lines
    assert f'bucketfs_info{{bucket="{bucket}",prefix="",mountpoint="{os.path.realpath(m.path)}",' \
        f'pid="{m.pid}"}} 1' in lines
    assert 'bucketfs_s3_sent_bytes_total 30' in lines
    assert re.search(r'^bucketfs_fuse_operations_total\{operation="CREATE"\} 3$', prom, re.M)

    table = bfs_stat(m).stdout
    assert re.search(rf'^  PutObject +{puts} +0 +0 ', table, re.M), table
    assert re.search(r'^  CREATE +3 ', table, re.M), table
    assert 'sent 30 B' in table and f'bucket {bucket}' in table

    # --watch redraws until interrupted
    p = subprocess.Popen([STAT_BIN, '--watch', '0.2', m.path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert out.count('S3 operation') >= 3, out


def test_only_the_mounting_user_reads_the_statistics(mount, bucket, test_dir):
    m = mount(bucket, opts=['allow_other'])
    assert json.loads(bfs_stat(m, '--json').stdout)['bucket'] == bucket
    r = run_as(65534, 65534, [STAT_BIN, '--json', m.path])
    assert r.returncode == 1 and 'only the user who mounted it' in r.stderr, r
    assert r.stdout == ''
    # the channel itself, as any program reads it: getxattr(2) on the mount root
    assert json.loads(os.getxattr(m.path, 'user.bucketfs.stats'))['pid'] == m.pid
    assert b'\nbucketfs_info{' in os.getxattr(m.path, 'user.bucketfs.stats.prom')
    if shutil.which('getfattr'):      # asks the size first, then reads
        r = subprocess.run(['getfattr', '--only-values', '-n', 'user.bucketfs.stats', m.path],
                           capture_output=True, text=True)
        assert r.returncode == 0 and json.loads(r.stdout)['bucket'] == bucket, r.stderr
    root_attrs = os.listxattr(m.path)
    assert not [a for a in root_attrs if 'bucketfs' in a], root_attrs
    with pytest.raises(OSError) as e:
        os.setxattr(m.path, 'user.bucketfs.stats', b'x')
    assert e.value.errno == errno.EPERM
    # not a mount root, not a mount: no statistics
    os.mkdir(os.path.join(m.path, 'sub'))
    r = subprocess.run([STAT_BIN, os.path.join(m.path, 'sub')], capture_output=True, text=True)
    assert r.returncode == 1 and 'not the root of a bucketfs mount' in r.stderr, r.stderr
    r = subprocess.run([STAT_BIN, str(test_dir)], capture_output=True, text=True)
    assert r.returncode == 1, r
    r = subprocess.run([STAT_BIN], capture_output=True, text=True)
    assert r.returncode == 2


def test_daemonized_mount_serves_statistics(mount, bucket, proxy):
    m = mount(bucket, daemon=True, opts=['slow_ms=600000'])
    with open(os.path.join(m.path, 'x'), 'wb') as f:
        f.write(b'12345')
    doc = stat_json(m)
    assert doc['pid'] == m.pid
    assert doc['s3']['operations']['PutObject']['requests'] == proxy.stats()['PutObject'] == 1
    assert doc['s3']['bytes_up'] == 5
