"""A 200 MiB file: uploaded with multipart, byte-exact in S3 and through a fresh mount."""
import hashlib
import os
import subprocess

from helpers import fmt_stats, ops, reset_counters, s3_head, sha256_file

SIZE_MIB = 200


def test_big_file_roundtrip(mount, bucket, s3, proxy, tmp_path):
    local = tmp_path / 'big.bin'
    subprocess.run(['dd', 'if=/dev/urandom', f'of={local}', 'bs=1M', f'count={SIZE_MIB}', 'status=none'],
                   check=True)
    size = SIZE_MIB * 1024 * 1024
    want = sha256_file(local)

    m = mount(bucket)
    reset_counters(proxy)
    r = subprocess.run(['cp', str(local), os.path.join(m.path, 'big.bin')], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f'cp into the mount failed: {r.stderr}'
    assert os.stat(os.path.join(m.path, 'big.bin')).st_size == size
    m.unmount()
    up = proxy.stats()
    assert ops(up, 'CreateMultipartUpload') >= 1 and ops(up, 'CompleteMultipartUpload') >= 1, \
        f'200 MiB not uploaded with multipart: {fmt_stats(up)}'
    assert ops(up, 'UploadPart') >= 2, f'{fmt_stats(up)}'
    assert ops(up, 'AbortMultipartUpload') == 0, f'an upload was aborted: {fmt_stats(up)}'
    assert up['bytes_up'] < 1.5 * size, f'{up["bytes_up"]} bytes sent for a {size}-byte file: {fmt_stats(up)}'

    assert s3_head(s3, bucket, 'big.bin')['ContentLength'] == size
    h = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key='big.bin')['Body'].iter_chunks(4 << 20):
        h.update(chunk)
    assert h.hexdigest() == want, 'S3 object differs from the local file'

    reset_counters(proxy)
    m.remount()
    got = sha256_file(os.path.join(m.path, 'big.bin'))
    assert got == want, 'file read back through a fresh mount differs from the local file'
    down = proxy.stats()
    assert down['bytes_down'] < 1.5 * size, f'read back {down["bytes_down"]} bytes for {size}: {fmt_stats(down)}'
    assert not proxy.violations(), [str(v) for v in proxy.violations()]


def test_modify_inside_big_file(mount, bucket, s3, tmp_path):
    """Small writes into the middle of a 64 MiB object and an extension keep every other byte."""
    local = tmp_path / 'mid.bin'
    local.write_bytes(os.urandom(64 * 1024 * 1024))
    m = mount(bucket)
    subprocess.run(['cp', str(local), os.path.join(m.path, 'mid.bin')], check=True)
    m.unmount()
    m.remount()
    edits = [(33 * 1024 * 1024 + 5, b'0123456789'), (8 * 1024 * 1024 - 3, b'straddles a part edge'),
             (64 * 1024 * 1024 + 1000, b'past the end')]
    with open(os.path.join(m.path, 'mid.bin'), 'r+b') as fm, open(local, 'r+b') as fl:
        for off, b in edits:
            os.pwrite(fm.fileno(), b, off)
            os.pwrite(fl.fileno(), b, off)
    m.unmount()
    want = sha256_file(local)
    h = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key='mid.bin')['Body'].iter_chunks(4 << 20):
        h.update(chunk)
    assert h.hexdigest() == want, 'S3 object differs from the local file after edits'
    m.remount()
    assert sha256_file(os.path.join(m.path, 'mid.bin')) == want
