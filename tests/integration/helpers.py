"""Shared helpers for the bucketfs integration tests (no fixtures here: those live in conftest.py).

Everything that looks at S3 goes through the boto3 client the `s3` fixture gives, directly to the
server, never through the mount: that is how a test proves the objects are real.
"""
import base64
import hashlib
import json
import os
import stat
import subprocess
import time
import urllib.parse
from pathlib import Path

import botocore.exceptions

S3FS_META = ('mode', 'uid', 'gid', 'mtime')


# ---- S3 side -------------------------------------------------------------------------------

# bucketfs's content-addressed digest lists (docs/integrity.md), at the bucket root.
SIDE_OBJECTS = '.bucketfs/digests/'


def s3_keys(s3, bucket, prefix='', side_objects=False):
    """All keys under prefix (paginated), as a set; without the digest side objects unless asked."""
    keys = set()
    for page in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix=prefix):
        keys.update(o['Key'] for o in page.get('Contents', []))
    if not side_objects:
        keys = {k for k in keys if not k.startswith(SIDE_OBJECTS)}
    return keys


def s3_body(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)['Body'].read()


def s3_head(s3, bucket, key):
    """head_object result, or None if the key does not exist."""
    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as e:
        if e.response['Error']['Code'] in ('404', 'NoSuchKey', 'NotFound'):
            return None
        raise


def s3_meta(s3, bucket, key):
    """x-amz-meta-* of key (names lowercase, without the prefix); fails clearly if absent."""
    h = s3_head(s3, bucket, key)
    assert h is not None, f'object {key!r} missing in bucket {bucket} (keys: {sorted(s3_keys(s3, bucket))[:20]})'
    return h['Metadata']


def s3fs_time(ns):
    """A time as s3fs writes it: "<sec>" or "<sec>.<9-digit nsec>"."""
    sec, nsec = divmod(ns, 10**9)
    return str(sec) if nsec == 0 else f'{sec}.{nsec:09d}'


def parse_s3fs_time(value):
    """Parses "<sec>" or "<sec>.<nsec digits>" into integer nanoseconds (exactly, no float)."""
    assert value is not None, 'time metadata missing'
    sec, _, frac = value.partition('.')
    assert sec.lstrip('-').isdigit() and (frac == '' or frac.isdigit()), f'bad s3fs time {value!r}'
    return int(sec) * 10**9 + int((frac + '000000000')[:9])


def put_s3fs_object(s3, bucket, key, body=b'', mode=0o100644, uid=0, gid=0, mtime_ns=None,
                    extra=None):
    """Writes key the way s3fs does: body = file bytes, ownership/mode/times in x-amz-meta-*."""
    if mtime_ns is None:
        mtime_ns = time.time_ns()
    meta = {'mode': str(mode), 'uid': str(uid), 'gid': str(gid), 'mtime': s3fs_time(mtime_ns),
            'ctime': s3fs_time(mtime_ns), 'atime': s3fs_time(mtime_ns)}
    meta.update(extra or {})
    ctype = 'application/x-directory' if key.endswith('/') else 'application/octet-stream'
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=meta, ContentType=ctype)


def decode_xattrs(meta):
    """s3fs's x-amz-meta-xattr: URL-encoded JSON object of name -> base64(value)."""
    raw = meta.get('xattr')
    if raw is None:
        return {}
    doc = json.loads(urllib.parse.unquote(raw))
    return {k: base64.b64decode(v) for k, v in doc.items()}


def assert_meta(meta, key, mode=None, uid=None, gid=None, mtime_ns=None):
    """Checks s3fs-style metadata of key against the expected values (None = not checked)."""
    if mode is not None:
        assert 'mode' in meta, f'{key}: no x-amz-meta-mode in {meta}'
        assert int(meta['mode']) == mode, \
            f'{key}: x-amz-meta-mode {meta["mode"]} = {int(meta["mode"]):o}, expected {mode} = {mode:o}'
    if uid is not None:
        assert meta.get('uid') == str(uid), f'{key}: x-amz-meta-uid {meta.get("uid")!r}, expected {uid}'
    if gid is not None:
        assert meta.get('gid') == str(gid), f'{key}: x-amz-meta-gid {meta.get("gid")!r}, expected {gid}'
    if mtime_ns is not None:
        got = parse_s3fs_time(meta.get('mtime'))
        assert got == mtime_ns, f'{key}: x-amz-meta-mtime {meta.get("mtime")!r}, expected {s3fs_time(mtime_ns)}'


# ---- mount side ----------------------------------------------------------------------------

def write_file(path, data, mode='wb'):
    with open(path, mode) as f:
        f.write(data)


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()


def sha256_file(path, bufsize=4 << 20):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def stat_summary(st):
    """The parts of a stat result that the bucket layout carries."""
    return {'mode': oct(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid, 'size': st.st_size,
            'mtime_ns': st.st_mtime_ns}


def is_mounted(path):
    path = os.path.realpath(path)
    with open('/proc/self/mounts') as f:
        for line in f:
            mnt = line.split()[1].replace('\\040', ' ')
            if mnt == path:
                return True
    return False


def run_as(uid, gid, argv, **kw):
    """Runs argv as uid:gid with no supplementary groups (setpriv), capturing output."""
    return subprocess.run(['setpriv', f'--reuid={uid}', f'--regid={gid}', '--clear-groups'] + argv,
                          capture_output=True, text=True, timeout=60, **kw)


def wait_until(pred, timeout, interval=0.1):
    """Polls pred() until it returns a true value or timeout seconds pass; returns the last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(interval)


def ops(stats, *names):
    """Sum of the request counts of the named S3 operations in a proxy.stats() dict."""
    return sum(stats.get(n, 0) for n in names)


REQUEST_OPS = ('GetObject', 'HeadObject', 'PutObject', 'CopyObject', 'DeleteObject', 'DeleteObjects',
               'ListObjectsV2', 'ListObjects', 'HeadBucket', 'CreateMultipartUpload', 'UploadPart',
               'CompleteMultipartUpload', 'AbortMultipartUpload')


# BFS_DIR_TIMES_DELAY_S (fs/fs_int.h): a directory's times reach its marker this long after
# the first entry changed in it, in one HeadObject + one CopyObject of the marker
DIR_TIMES_DELAY_S = 5


def dir_time_stores(proxy):
    """How many CopyObject requests since the last reset stored directory times (marker keys
    end in '/'), for request counts that are about files."""
    return sum(1 for r in proxy.requests() if r.op == 'CopyObject' and (r.key or '').endswith('/'))


def request_count(stats):
    """Total number of S3 requests in a proxy.stats() dict (bytes counters excluded)."""
    return sum(v for k, v in stats.items() if not k.startswith('bytes_'))


def fmt_stats(stats):
    return ', '.join(f'{k}={v}' for k, v in sorted(stats.items()) if v)


def mode_str(m):
    return f'{stat.filemode(m)} ({m:o})'


def reset_counters(proxy):
    """proxy.reset() also forgets violations: fail on any recorded so far, then reset."""
    v = proxy.violations()
    assert not v, 'S3 protocol violations before the measured step:\n' + '\n'.join(map(str, v[:10]))
    proxy.reset()


def write_key_file(directory, key):
    """An HMAC key file (one key, mode 0600, as bucketfs requires) in directory; its path."""
    p = Path(directory) / 'hmac.key'
    p.write_bytes(key + b'\n')
    p.chmod(0o600)
    return str(p)


def run_fsck(proxy, spec, keyfile=None, args=(), tmp=None, timeout=120):
    """bin/bucketfs-fsck SPEC -o endpoint=<proxy>,... ARGS with the proxy's credentials."""
    from conftest import bfs_bin
    opts = f'endpoint={proxy.endpoint},path_style,region=us-east-1'
    if keyfile:
        opts += f',hmac_key_file={keyfile}'
    if tmp:
        opts += f',cache_dir={tmp}/fsck-cache'
    env = {k: v for k, v in os.environ.items() if not k.startswith('AWS_')}
    env.update(AWS_ACCESS_KEY_ID=next(iter(proxy.credentials)),
               AWS_SECRET_ACCESS_KEY=next(iter(proxy.credentials.values())))
    exe = os.path.join(os.path.dirname(bfs_bin()), 'bucketfs-fsck')
    return subprocess.run([exe, spec, '-o', opts] + list(args), capture_output=True,
                          text=True, timeout=timeout, env=env)
