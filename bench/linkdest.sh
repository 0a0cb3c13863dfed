#!/usr/bin/env bash
# bench/linkdest.sh — the day-2 run of an rsync --link-dest backup (issue 5, docs/hardlinks.md)
# on bucketfs and on s3fs 1.90, same source tree, same S3 server, same run: wall time, bytes
# uploaded and downloaded, S3 requests by kind, and the bytes stored in the bucket afterwards,
# with bucketfs/s3fs ratios.
#
#   bash bench/linkdest.sh                         # 300 small files + one 20 MiB file
#   BENCH_FILES=1000 BENCH_BIG=50M bash bench/linkdest.sh
#
# The scenario, for each file system in its own bucket:
#   day 1   rsync -a --numeric-ids --delete src/ MNT/bk/day1/, then unmount (uploads finish)
#   change  10 files rewritten (new content and mtime), 5 deleted, 5 added (same for both)
#   day 2   mount, then timed: rsync -a --numeric-ids --delete --link-dest=MNT/bk/day1
#           src/ MNT/bk/day2/ and the unmount (bucketfs uploads in the background, so the
#           unmount, which waits for the uploads, is part of the cost; s3fs the same)
#   check   rsync -anic --numeric-ids src/ MNT/bk/day2/ on a fresh mount lists nothing
# Requests are counted by tests/proxy/audit_proxy.py (peer mode, which both clients pass)
# between the client and the server. s3fs 1.90's link() fails, so rsync copies each unchanged
# file from day1 instead (reads it back and uploads it again); that is the difference measured.
#
# Environment: BENCH_FILES (small files, default 300), BENCH_BIG (the one big file, default
# 20M, K/M/G suffixes), BENCH_DIR (work directory, default a new one under /var/tmp, removed at
# the end unless given). Needs: make (bin/bucketfs), make deps (tests/s3server), Debian's s3fs,
# rsync, python3-boto3. Starts its own s3rver on a free 127.0.0.1 port. Not run by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
. "$REPO/bench/lib.sh"

FILES=${BENCH_FILES:-300}
BIG=$(numfmt --from=iec "${BENCH_BIG:-20M}") || { echo "bad BENCH_BIG ${BENCH_BIG:-}" >&2; exit 2; }
bench_need_bins
command -v s3fs >/dev/null || { echo "bench: s3fs missing (apt-get install s3fs)" >&2; exit 2; }
command -v rsync >/dev/null || { echo "bench: rsync missing" >&2; exit 2; }

WORK=${BENCH_DIR:-$(mktemp -d /var/tmp/bucketfs-linkdest.XXXXXX)}
mkdir -p "$WORK/s3data"
trap bench_cleanup EXIT

# ---- S3 server on a free port ----
bench_start_s3rver

# ---- the runs (Python: the proxies run in-process so they can be reset and read) ----
/usr/bin/python3 - "$REPO" "$ENDPOINT" "$WORK" "$FILES" "$BIG" <<'EOF'
import os, random, subprocess, sys, time
from pathlib import Path

repo, upstream, work, nfiles, big = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, os.path.join(repo, 'tests', 'proxy'))
import boto3
from botocore.config import Config
from audit_proxy import AuditProxy

CRED = {'S3RVER': 'S3RVER'}
s3 = boto3.client('s3', endpoint_url=upstream, aws_access_key_id='S3RVER', aws_secret_access_key='S3RVER',
                  region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
passwd = work / 'passwd-s3fs'
passwd.write_text('S3RVER:S3RVER\n')
passwd.chmod(0o600)
BASE_NS = 1650000000_000000000


def sh(*argv, ok=(0,)):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode not in ok:
        sys.exit(f'bench: {" ".join(argv)} failed ({r.returncode}): {r.stderr[-2000:]}')
    return r.stdout


class FS:
    def __init__(self, name, bucket):
        self.name, self.bucket = name, bucket
        self.proxy = AuditProxy(upstream, mode='peer', credentials=CRED).start()
        self.mnt = work / f'mnt-{name}'
        self.mnt.mkdir()
        self.log = open(work / f'{name}.log', 'ab')
        self.proc = None
        s3.create_bucket(Bucket=bucket)

    def argv(self):
        if self.name == 'bucketfs':
            return [os.path.join(repo, 'bin', 'bucketfs'), self.bucket, str(self.mnt), '-f', '-o',
                    f'endpoint={self.proxy.endpoint},path_style,region=us-east-1,cache_dir={work}/cache-bucketfs']
        return ['s3fs', self.bucket, str(self.mnt), '-f', '-o',
                f'url={self.proxy.endpoint},use_path_request_style,passwd_file={passwd},endpoint=us-east-1,dbglevel=warn']

    def mount(self):
        env = dict(os.environ, AWS_ACCESS_KEY_ID='S3RVER', AWS_SECRET_ACCESS_KEY='S3RVER')
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        for _ in range(300):
            if os.path.ismount(self.mnt):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        sys.exit(f'bench: {self.name} did not mount; see {work}/{self.name}.log')

    def unmount(self):
        sh('fusermount3', '-u', str(self.mnt))
        self.proc.wait(600)     # bucketfs exits when its uploads are done

    def stored_bytes(self):
        total = 0
        for page in s3.get_paginator('list_objects_v2').paginate(Bucket=self.bucket):
            total += sum(o['Size'] for o in page.get('Contents', []))
        return total


def make_tree(src, rnd):
    dirs = [f'd{i:02d}/s{j}' for i in range(max(1, nfiles // 50)) for j in range(3)]
    for d in dirs:
        os.makedirs(src / d, exist_ok=True)
    files = []
    for i in range(nfiles):
        rel = f'{rnd.choice(dirs)}/f{i:05d}'
        (src / rel).write_bytes(rnd.randbytes(0 if i % 20 == 0 else rnd.randrange(1, 3000)))
        os.chown(src / rel, (0, 1000, 1001)[i % 3], (0, 1000)[i % 2])
        os.chmod(src / rel, (0o644, 0o600, 0o755, 0o640)[i % 4])
        os.utime(src / rel, ns=(BASE_NS, BASE_NS + i * 1000003 + 7))
        files.append(rel)
    (src / 'd00/s0/big.img').write_bytes(rnd.randbytes(big))
    for i in range(10):
        os.symlink(f'f{i:05d}', src / rnd.choice(dirs) / f'link{i}')
    return files


rnd = random.Random(5)
src = work / 'src'
files = make_tree(src, rnd)
systems = [FS('bucketfs', 'linkdest-bucketfs'), FS('s3fs', 'linkdest-s3fs')]
for fs in systems:
    fs.mount()
    os.mkdir(fs.mnt / 'bk')
    sh('rsync', '-a', '--numeric-ids', '--delete', f'{src}/', f'{fs.mnt}/bk/day1/')
    fs.unmount()

picked = rnd.sample(files, 15)
for i, rel in enumerate(picked[:10]):
    st = os.stat(src / rel)
    (src / rel).write_bytes(b'changed %d ' % i + rnd.randbytes(rnd.randrange(0, 5000)))
    os.utime(src / rel, ns=(BASE_NS, st.st_mtime_ns + 10**9))
for rel in picked[10:]:
    os.unlink(src / rel)
for i in range(5):
    (src / f'd00/s1/new{i}').write_bytes(rnd.randbytes(1000 * (i + 1)))
changed_bytes = sum(os.path.getsize(src / r) for r in picked[:10]) + sum(1000 * (i + 1) for i in range(5))

rows = {}
for fs in systems:
    fs.mount()
    fs.proxy.reset()
    t = time.monotonic()
    out = sh('rsync', '-a', '--numeric-ids', '--delete', f'--link-dest={fs.mnt}/bk/day1', '--stats',
             f'{src}/', f'{fs.mnt}/bk/day2/')
    fs.unmount()
    wall = time.monotonic() - t
    st = fs.proxy.stats()
    fs.mount()
    diff = sh('rsync', '-anic', '--numeric-ids', f'{src}/', f'{fs.mnt}/bk/day2/')
    fs.unmount()
    if diff.strip():
        sys.exit(f'bench: {fs.name}: day 2 differs from the source:\n{diff[:2000]}')
    n = next((l.split(':')[1].strip() for l in out.splitlines() if l.startswith('Number of regular files transferred')), '?')
    v = fs.proxy.take_violations()
    rows[fs.name] = {
        'wall time (s)': wall,
        'bytes uploaded': st['bytes_up'],
        'bytes downloaded': st['bytes_down'],
        'S3 requests': sum(c for k, c in st.items() if not k.startswith('bytes_')),
        '  PutObject': st.get('PutObject', 0),
        '  UploadPart': st.get('UploadPart', 0),
        '  CopyObject': st.get('CopyObject', 0),
        '  GetObject': st.get('GetObject', 0),
        '  HeadObject': st.get('HeadObject', 0),
        '  ListObjects(V2)': st.get('ListObjectsV2', 0) + st.get('ListObjects', 0),
        '  Delete*': st.get('DeleteObject', 0) + st.get('DeleteObjects', 0),
        'bucket bytes after day 2': fs.stored_bytes(),
        'rsync: files transferred': n,
        'proxy violations': len(v),
    }
    fs.proxy.stop()

print()
print(f'rsync --link-dest day 2: {nfiles} small files + 1 x {big} B file + 10 symlinks; '
      f'10 changed, 5 deleted, 5 added ({changed_bytes} B of new data)')
print(f'S3: s3rver 3.7.1 on {upstream}, via tests/proxy/audit_proxy.py (peer mode); '
      f'bucketfs default options; s3fs 1.90 default options')
print(f'{"":28} {"bucketfs":>14} {"s3fs 1.90":>14} {"bucketfs/s3fs":>14}')
for k in rows['bucketfs']:
    a, b = rows['bucketfs'][k], rows['s3fs'][k]
    fmt = (lambda x: f'{x:14.2f}') if isinstance(a, float) else (lambda x: f'{x:>14}')
    ratio = f'{a / b:14.3f}' if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else f'{"-":>14}'
    print(f'{k:28} {fmt(a)} {fmt(b)} {ratio}')
EOF
