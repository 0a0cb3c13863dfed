"""An object's standard headers (Content-Type, Content-Encoding, Cache-Control,
Content-Disposition) and ETag as the virtual extended attributes user.s3.*: read, set and
removed through the mount with one CopyObject each, kept across bucketfs's own writes and
renames, and guessed from /etc/mime.types for new files."""
import errno
import os

import pytest

from helpers import assert_meta, decode_xattrs, fmt_stats, ops, put_s3fs_object, read_file, \
    reset_counters, s3_body, s3_head, s3_meta, wait_until, write_file

HEADERS = {'ContentType': 'text/plain; charset=utf-8', 'ContentEncoding': 'identity',
           'CacheControl': 'max-age=3600, public',
           'ContentDisposition': 'attachment; filename="report.txt"'}
XATTRS = {'ContentType': 'user.s3.content_type', 'ContentEncoding': 'user.s3.content_encoding',
          'CacheControl': 'user.s3.cache_control',
          'ContentDisposition': 'user.s3.content_disposition'}
MTIME = 1700000000_000000000


def put_with_headers(s3, bucket, key, body=b'hello headers\n'):
    """An object as s3fs writes it (mode, owner, mtime, one user xattr) plus the 4 headers."""
    put_s3fs_object(s3, bucket, key, body, mode=0o100640, uid=1000, gid=1000, mtime_ns=MTIME,
                    extra={'xattr': '%7B%22user.k%22%3A%22dg%3D%3D%22%7D'})  # user.k = "v"
    s3.copy_object(Bucket=bucket, Key=key, CopySource={'Bucket': bucket, 'Key': key},
                   MetadataDirective='REPLACE', Metadata=s3_meta(s3, bucket, key), **HEADERS)
    h = s3_head(s3, bucket, key)
    for k, v in HEADERS.items():
        assert h.get(k) == v, f'the S3 server did not keep {k}: {h}'
    return h


def headers_of(s3, bucket, key):
    h = s3_head(s3, bucket, key)
    assert h is not None, f'{key} missing'
    return {k: h.get(k) for k in HEADERS}


def test_read_headers_and_etag(mount, bucket, s3):
    h = put_with_headers(s3, bucket, 'doc.txt')
    m = mount(bucket)
    p = os.path.join(m.path, 'doc.txt')
    for k, name in XATTRS.items():
        assert os.getxattr(p, name).decode() == HEADERS[k]
    assert os.getxattr(p, 'user.s3.etag').decode() == h['ETag'].strip('"')
    # read by name, not listed: getfattr -d, rsync -X and cp -a copy only user.k (a copied
    # user.s3.etag could never be set)
    assert os.listxattr(p) == ['user.k']
    assert os.getxattr(p, 'user.k') == b'v'
    # a header the object lacks is absent, and not listed
    put_s3fs_object(s3, bucket, 'plain', b'x')
    q = os.path.join(m.path, 'plain')
    with pytest.raises(OSError) as e:
        os.getxattr(q, 'user.s3.cache_control')
    assert e.value.errno == errno.ENODATA
    assert os.getxattr(q, 'user.s3.etag')
    assert os.listxattr(q) == []


def test_set_is_one_copy_keeping_metadata(mount, bucket, s3, proxy):
    put_with_headers(s3, bucket, 'doc.txt')
    m = mount(bucket)
    p = os.path.join(m.path, 'doc.txt')
    os.stat(p)
    reset_counters(proxy)
    os.setxattr(p, 'user.s3.cache_control', b'no-store')
    st = proxy.stats()
    assert ops(st, 'CopyObject') == 1, fmt_stats(st)
    assert ops(st, 'PutObject', 'GetObject', 'CreateMultipartUpload', 'UploadPart') == 0, \
        fmt_stats(st)
    want = dict(HEADERS, CacheControl='no-store')
    assert headers_of(s3, bucket, 'doc.txt') == want
    meta = s3_meta(s3, bucket, 'doc.txt')
    assert_meta(meta, 'doc.txt', mode=0o100640, uid=1000, gid=1000, mtime_ns=MTIME)
    assert decode_xattrs(meta) == {'user.k': b'v'}  # user.s3.* never stored there
    assert s3_body(s3, bucket, 'doc.txt') == b'hello headers\n'
    assert os.getxattr(p, 'user.s3.cache_control') == b'no-store'
    # the new ETag shows
    assert os.getxattr(p, 'user.s3.etag').decode() == \
        s3_head(s3, bucket, 'doc.txt')['ETag'].strip('"')

    # remove one: one more CopyObject, the others stay
    reset_counters(proxy)
    os.removexattr(p, 'user.s3.content_disposition')
    st = proxy.stats()
    assert ops(st, 'CopyObject') == 1 and ops(st, 'PutObject', 'GetObject') == 0, fmt_stats(st)
    want['ContentDisposition'] = None
    assert headers_of(s3, bucket, 'doc.txt') == want
    with pytest.raises(OSError) as e:
        os.getxattr(p, 'user.s3.content_disposition')
    assert e.value.errno == errno.ENODATA
    assert_meta(s3_meta(s3, bucket, 'doc.txt'), 'doc.txt', mode=0o100640, uid=1000,
                mtime_ns=MTIME)
    with pytest.raises(OSError) as e:
        os.removexattr(p, 'user.s3.content_disposition')
    assert e.value.errno == errno.ENODATA


def test_etag_is_read_only(mount, bucket, s3):
    put_with_headers(s3, bucket, 'doc.txt')
    before = s3_head(s3, bucket, 'doc.txt')['ETag']
    m = mount(bucket)
    p = os.path.join(m.path, 'doc.txt')
    for call in (lambda: os.setxattr(p, 'user.s3.etag', b'x'),
                 lambda: os.removexattr(p, 'user.s3.etag')):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.setxattr(p, 'user.s3.unknown', b'x')
    assert e.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as e:
        os.setxattr(p, 'user.s3.cache_control', b'a\r\nx-amz-acl: public-read')
    assert e.value.errno == errno.EINVAL
    assert s3_head(s3, bucket, 'doc.txt')['ETag'] == before


def test_headers_survive_writes_and_rename(mount, bucket, s3):
    put_with_headers(s3, bucket, 'doc.txt')
    m = mount(bucket)
    p = os.path.join(m.path, 'doc.txt')
    with open(p, 'ab') as f:
        f.write(b'appended\n')
    assert s3_body(s3, bucket, 'doc.txt') == b'hello headers\nappended\n'
    assert headers_of(s3, bucket, 'doc.txt') == HEADERS
    assert decode_xattrs(s3_meta(s3, bucket, 'doc.txt')) == {'user.k': b'v'}

    os.truncate(p, 5)  # no open file: uploaded upload_delay later
    assert wait_until(lambda: s3_body(s3, bucket, 'doc.txt') == b'hello', 10)
    assert headers_of(s3, bucket, 'doc.txt') == HEADERS

    os.chmod(p, 0o600)
    os.sync()
    def chmod_done():
        return int(s3_meta(s3, bucket, 'doc.txt')['mode']) == 0o100600
    assert wait_until(chmod_done, 10)
    assert headers_of(s3, bucket, 'doc.txt') == HEADERS

    q = os.path.join(m.path, 'moved.bin')
    os.rename(p, q)
    assert s3_head(s3, bucket, 'doc.txt') is None
    assert headers_of(s3, bucket, 'moved.bin') == HEADERS  # kept, not guessed from .bin
    assert s3_body(s3, bucket, 'moved.bin') == b'hello'
    assert os.getxattr(q, 'user.s3.cache_control').decode() == HEADERS['CacheControl']


def test_new_files_typed_from_mime_types(mount, bucket, s3):
    types = {}
    with open('/etc/mime.types') as f:  # tools/install-deps.sh installs media-types
        for line in f:
            w = line.split('#')[0].split()
            for ext in w[1:]:
                types.setdefault(ext, w[0])
    assert types.get('html') == 'text/html' and types.get('css') == 'text/css'
    m = mount(bucket)
    os.mkdir(os.path.join(m.path, 'www'))
    write_file(os.path.join(m.path, 'www', 'index.html'), b'<html></html>\n')
    write_file(os.path.join(m.path, 'www', 'x.css'), b'body {}\n')
    write_file(os.path.join(m.path, 'www', 'noext'), b'?')
    assert s3_head(s3, bucket, 'www/index.html')['ContentType'] == 'text/html'
    assert s3_head(s3, bucket, 'www/x.css')['ContentType'] == 'text/css'
    assert s3_head(s3, bucket, 'www/noext')['ContentType'] == 'application/octet-stream'
    p = os.path.join(m.path, 'www', 'x.css')
    assert os.getxattr(p, 'user.s3.content_type') == b'text/css'

    # what the user sets wins over the guess, also across later writes
    os.setxattr(p, 'user.s3.content_type', b'text/plain')
    assert s3_head(s3, bucket, 'www/x.css')['ContentType'] == 'text/plain'
    with open(p, 'ab') as f:
        f.write(b'p {}\n')
    assert s3_body(s3, bucket, 'www/x.css') == b'body {}\np {}\n'
    assert s3_head(s3, bucket, 'www/x.css')['ContentType'] == 'text/plain'
    write_file(p, b'rewritten\n')
    assert s3_head(s3, bucket, 'www/x.css')['ContentType'] == 'text/plain'
    assert read_file(p) == b'rewritten\n'


def test_changed_object_not_clobbered(mount, bucket, s3, proxy):
    put_with_headers(s3, bucket, 'doc.txt')
    m = mount(bucket, opts=['stat_ttl=60'])
    p = os.path.join(m.path, 'doc.txt')
    assert os.getxattr(p, 'user.s3.content_type').decode() == HEADERS['ContentType']
    # somebody else replaces the object between our stat and our setxattr
    s3.put_object(Bucket=bucket, Key='doc.txt', Body=b'their version\n',
                  ContentType='text/x-theirs', Metadata={'owner': 'them'})
    # bucketfs reads the object afresh (one HEAD) and copies it only if it is still that
    # one (If-Match): it fails with ESTALE when it changed in between, else it applies the
    # change to their version; either way their data and metadata stay
    try:
        os.setxattr(p, 'user.s3.content_type', b'text/mine')
        applied = True
    except OSError as e:
        assert e.errno in (errno.ESTALE, errno.EIO), e
        applied = False
    h = s3_head(s3, bucket, 'doc.txt')
    # their metadata stays, and none of our old view of the object comes back (bucketfs
    # may add the attributes it showed for their object: mode, owner, times)
    meta = h['Metadata']
    assert meta.get('owner') == 'them', meta
    assert 'xattr' not in meta and meta.get('mode') != str(0o100640) and \
        meta.get('uid') != '1000', meta
    assert h['ContentType'] == ('text/mine' if applied else 'text/x-theirs')
    assert s3_body(s3, bucket, 'doc.txt') == b'their version\n'
    assert os.getxattr(p, 'user.s3.content_type') == h['ContentType'].encode()
    assert 'user.k' not in os.listxattr(p)  # our old view of it is gone
