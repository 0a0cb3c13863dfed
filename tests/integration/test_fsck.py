"""bin/bucketfs-fsck (docs/integrity.md): nothing reported on a clean bucket written through
bucketfs, each planted problem found with the right kind and key, exit codes 0/1/2, --json,
--abort-uploads, and no writes without a repair flag."""
import hashlib
import json
import os

import pytest

from helpers import ops, reset_counters, run_fsck, write_file, write_key_file

KEY = b'fsck-test-key-0123456789abcdef'
MiB = 1 << 20


@pytest.fixture
def keyfile(test_dir):
    return write_key_file(test_dir, KEY)


def fsck(proxy, spec, keyfile=None, args=(), tmp=None):
    return run_fsck(proxy, spec, keyfile, args, tmp)


def problems(res):
    doc = json.loads(res.stdout)
    return sorted((p['kind'], p['key']) for p in doc['problems']), doc


def populate(mount, bucket, keyfile):
    m = mount(bucket, opts=['sync_close', f'hmac_key_file={keyfile}'])
    os.makedirs(os.path.join(m.path, 'd', 'e'))
    write_file(os.path.join(m.path, 'd', 'small'), b'hello\n')
    write_file(os.path.join(m.path, 'd', 'big'), os.urandom(3 * MiB + 5))
    write_file(os.path.join(m.path, 'gone'), os.urandom(2 * MiB + 1))
    os.symlink('d/small', os.path.join(m.path, 'link'))
    write_file(os.path.join(m.path, 'empty'), b'')
    m.unmount()


def test_clean_bucket(mount, bucket, proxy, keyfile, tmp_path):
    populate(mount, bucket, keyfile)
    reset_counters(proxy)
    res = fsck(proxy, bucket, keyfile, ['--json', '--no-progress'], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    found, doc = problems(res)
    assert found == []
    assert doc['objects'] >= 8 and doc['hmac'] is True   # 6 objects, 2 markers, 2 digest lists
    assert 'error' not in res.stderr, res.stderr
    st = proxy.stats()
    for op in ('PutObject', 'CopyObject', 'DeleteObject', 'DeleteObjects',
               'AbortMultipartUpload', 'UploadPart'):
        assert ops(st, op) == 0, f'fsck wrote: {st}'
    assert ops(st, 'GetObject') >= 5
    # text output, and without a key signatures are not judged
    res = fsck(proxy, bucket, None, ['--no-progress'], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert '0 problems' in res.stdout and 'signatures not checked' in res.stdout


def test_planted_problems(mount, bucket, s3, proxy, keyfile, tmp_path):
    populate(mount, bucket, keyfile)
    # 1. orphan: a file deleted through bucketfs leaves its digest list behind
    m = mount(bucket, opts=['sync_close', f'hmac_key_file={keyfile}'])
    gone_root = s3.head_object(Bucket=bucket, Key='gone')['Metadata']['bfs-digest'].split(':')[2]
    os.unlink(os.path.join(m.path, 'gone'))
    m.unmount()
    # 2. corrupt content with the signed headers kept (same length)
    h = s3.head_object(Bucket=bucket, Key='d/small')
    s3.put_object(Bucket=bucket, Key='d/small', Body=b'HELLO\n', Metadata=h['Metadata'])
    # 3. metadata tampering: the setuid bit
    h = s3.head_object(Bucket=bucket, Key='empty')
    meta = dict(h['Metadata'], mode=str(0o104755))
    s3.copy_object(Bucket=bucket, Key='empty', CopySource={'Bucket': bucket, 'Key': 'empty'},
                   Metadata=meta, MetadataDirective='REPLACE')
    # 4. unsigned object; 5. marker with a body; 6. file and directory at once
    s3.put_object(Bucket=bucket, Key='foreign', Body=b'x')
    s3.put_object(Bucket=bucket, Key='m/', Body=b'not empty')
    s3.put_object(Bucket=bucket, Key='both', Body=b'f')
    s3.put_object(Bucket=bucket, Key='both/child', Body=b'c')
    # 8. a digest list replaced: it no longer hashes to its name, and d/big cannot verify
    big_root = s3.head_object(Bucket=bucket, Key='d/big')['Metadata']['bfs-digest'].split(':')[2]
    body = s3.get_object(Bucket=bucket, Key=f'.bucketfs/digests/{big_root}')['Body'].read()
    s3.put_object(Bucket=bucket, Key=f'.bucketfs/digests/{big_root}',
                  Body=bytes([body[0] ^ 1]) + body[1:])

    res = fsck(proxy, bucket, keyfile, ['--json', '--no-progress'], tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    found, _ = problems(res)
    want = {
        ('orphan', f'.bucketfs/digests/{gone_root}'),
        ('corrupt', 'd/small'),
        ('bad-signature', 'empty'),
        ('unsigned', 'foreign'),
        ('unsigned', 'm/'), ('marker-with-body', 'm/'),
        ('unsigned', 'both'), ('unsigned', 'both/child'), ('file-and-directory', 'both'),
        ('corrupt', f'.bucketfs/digests/{big_root}'), ('corrupt', 'd/big'),
    }
    assert set(found) == want, f'missing: {want - set(found)}; unexpected: {set(found) - want}'
    # fsck changed nothing: the same problems a second time
    res = fsck(proxy, bucket, keyfile, ['--json', '--no-progress'], tmp_path)
    assert set(problems(res)[0]) == want


def test_incomplete_upload(bucket, s3, proxy, keyfile, tmp_path):
    up = s3.create_multipart_upload(Bucket=bucket, Key='partial')['UploadId']
    s3.upload_part(Bucket=bucket, Key='partial', UploadId=up, PartNumber=1, Body=b'p' * 100)
    try:
        s3.list_multipart_uploads(Bucket=bucket)
    except Exception as e:  # s3rver 3.7.1 answers 501 NotImplemented
        res = fsck(proxy, bucket, keyfile, ['--json', '--no-progress'], tmp_path)
        assert res.returncode == 0 and json.loads(res.stdout)['uploads_checked'] is False
        assert 'cannot list multipart uploads' in res.stderr
        pytest.skip(f'the test S3 server cannot list multipart uploads ({e}); checked that '
                    'fsck says so instead of failing')
    res = fsck(proxy, bucket, keyfile, ['--json', '--no-progress'], tmp_path)
    assert res.returncode == 1 and problems(res)[0] == [('incomplete-upload', 'partial')]
    res = fsck(proxy, bucket, keyfile, ['--json', '--no-progress', '--abort-uploads'], tmp_path)
    assert res.returncode == 1
    assert s3.list_multipart_uploads(Bucket=bucket).get('Uploads', []) == []
    res = fsck(proxy, bucket, keyfile, ['--json', '--no-progress'], tmp_path)
    assert res.returncode == 0


def test_prefix_and_errors(mount, bucket, s3, proxy, keyfile, tmp_path):
    populate(mount, bucket, keyfile)
    s3.put_object(Bucket=bucket, Key='other/unsigned', Body=b'x')
    res = fsck(proxy, f'{bucket}:d', keyfile, ['--json', '--no-progress'], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    res = fsck(proxy, f'{bucket}:other', keyfile, ['--json', '--no-progress'], tmp_path)
    assert res.returncode == 1 and problems(res)[0] == [('unsigned', 'other/unsigned')]
    res = fsck(proxy, 'no-such-bucket-xyz', keyfile, ['--no-progress'], tmp_path)
    assert res.returncode == 2 and 'no-such-bucket-xyz' in res.stderr
    res = fsck(proxy, bucket, keyfile, ['--bogus'], tmp_path)
    assert res.returncode == 2
    os.chmod(keyfile, 0o644)
    res = fsck(proxy, bucket, keyfile, ['--no-progress'], tmp_path)
    assert res.returncode == 2 and 'chmod 600' in res.stderr


def test_progress_lines_when_not_a_tty(mount, bucket, proxy, keyfile, tmp_path):
    populate(mount, bucket, keyfile)
    res = fsck(proxy, bucket, keyfile, [], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [l for l in res.stderr.splitlines() if l and 'multipart uploads' not in l]
    assert lines and all(l.startswith('progress: ') for l in lines), res.stderr
    assert '\r' not in res.stderr
    assert 'objects' in lines[-1] and 'ETA' in lines[-1]
