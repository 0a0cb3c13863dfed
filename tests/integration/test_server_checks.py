"""What only a real server shows: Ceph RGW checks signatures and Content-MD5 itself, so
bucketfs's SigV4 signer and MD5s are verified by a second implementation besides the
auditing proxy, and a wrong credential fails the mount with one clear line.

(s3rver accepts any signature and any Content-MD5: these tests run on RGW only.)"""
import base64
import hashlib
import os

import pytest
from botocore.exceptions import ClientError

import conftest
from conftest import make_client
from helpers import s3_body, s3_head

pytestmark = pytest.mark.skipif(not conftest.on_rgw,
                                reason='s3rver checks neither signatures nor Content-MD5')


def test_server_refuses_a_wrong_signature(s3server, bucket):
    bad = make_client(s3server.endpoint, secret_key='not-the-secret')
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=bucket, Key='k', Body=b'x')
    assert e.value.response['Error']['Code'] == 'SignatureDoesNotMatch'


def test_server_refuses_a_wrong_content_md5(s3server, s3, bucket):
    wrong = base64.b64encode(hashlib.md5(b'other').digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key='k', Body=b'payload', ContentMD5=wrong)
    assert e.value.response['Error']['Code'] in ('BadDigest', 'InvalidDigest')


def test_bucketfs_requests_pass_the_servers_own_checks(mount, bucket, s3, s3server, test_dir):
    """Mounted straight on RGW (no proxy in between): single PUT, multipart, copy, list,
    delete all accepted, so the server's signature and MD5 checks agree with ours."""
    m = mount(bucket, opts=[f'endpoint={s3server.endpoint}', 'part_size=5M'])
    big = os.urandom((5 << 20) + 12345)
    with open(os.path.join(m.path, 'big'), 'wb') as f:
        f.write(big)
    with open(os.path.join(m.path, 'small'), 'wb') as f:
        f.write(b'small')
    os.mkdir(os.path.join(m.path, 'dir with space+plus'))
    os.rename(os.path.join(m.path, 'small'), os.path.join(m.path, 'dir with space+plus', 's&=?'))
    os.chmod(os.path.join(m.path, 'big'), 0o600)
    m.unmount()
    assert s3_body(s3, bucket, 'big') == big
    assert s3_body(s3, bucket, 'dir with space+plus/s&=?') == b'small'
    assert 'wrong' not in m.log_text() and 'SignatureDoesNotMatch' not in m.log_text()


def test_mount_with_a_wrong_secret_fails_clearly(mount, bucket, s3server):
    res = mount(bucket, opts=[f'endpoint={s3server.endpoint}'], check=False,
                env={'AWS_SECRET_ACCESS_KEY': 'not-the-secret'})
    assert res.returncode != 0
    said = [ln for ln in res.stderr.splitlines() if ln.startswith('bucketfs:')]
    assert len(said) == 1, res.stderr
    assert 'access denied' in said[0] and 'SignatureDoesNotMatch' in said[0], said[0]
    assert 'not-the-secret' not in res.stderr


def test_rename_beyond_copy_limit_copies_in_parts(mount, bucket, s3, proxy):
    """A server refuses one CopyObject of an object over its copy limit (AWS: 5 GiB, as
    InvalidRequest): the rename then copies it with UploadPartCopy in parts of at most
    copy_limit, each from the same source version, no data through bucketfs, and the
    moved object keeps content and metadata. (s3rver has no UploadPartCopy.)"""
    m = mount(bucket, opts=['copy_limit=5M'])
    data = os.urandom((12 << 20) + 4321)
    src, dst = os.path.join(m.path, 'big'), os.path.join(m.path, 'moved')
    with open(src, 'wb') as f:
        f.write(data)
    os.chmod(src, 0o640)
    before = proxy.stats()
    refused = proxy.fault('error', op='CopyObject', status=400, code='InvalidRequest')
    os.rename(src, dst)
    after = proxy.stats()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert refused.hits == 1
    assert delta.get('UploadPartCopy') == 3, delta
    assert delta.get('CompleteMultipartUpload') == 1, delta
    assert delta.get('bytes_up', 0) < (1 << 20), f'data went through bucketfs: {delta}'
    assert s3_body(s3, bucket, 'moved') == data
    assert s3_head(s3, bucket, 'big') is None
    head = s3_head(s3, bucket, 'moved')
    assert head['ETag'].endswith('-3"'), head['ETag']
    assert int(head['Metadata']['mode']) & 0o7777 == 0o640, head['Metadata']
    with open(dst, 'rb') as f:
        assert f.read() == data
    assert os.stat(dst).st_mode & 0o7777 == 0o640
