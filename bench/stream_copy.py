#!/usr/bin/python3
"""bench/stream_copy.py — what the final CopyObject of a streamed upload costs on a server
(docs/streaming.md): the time of a multipart upload of SIZE (16 threads, 8 MiB parts, as the
raw limit of bench/run), then of CopyObject of that object to another key with metadata
REPLACE (what a streamed close adds), and of the DELETE of the source.

    bench/stream_copy.py [--server s3rver|rgw|both] [--size 256M] [--rounds 3]

The upload time is what streaming can move before close() (all but the tail); the copy and
the delete are what it adds after it. Prints the median of --rounds rounds per server."""
import argparse
import importlib.machinery
import importlib.util
import os
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
loader = importlib.machinery.SourceFileLoader('bench_run', str(HERE / 'run'))
spec = importlib.util.spec_from_loader('bench_run', loader)
run = importlib.util.module_from_spec(spec)
loader.exec_module(run)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--server', default='s3rver', choices=['s3rver', 'rgw', 'both'])
    ap.add_argument('--size', type=run.size_arg, default=256 * run.MiB)
    ap.add_argument('--rounds', type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix='bucketfs-copy-', dir='/var/tmp'))
    src = work / 'src'
    with open(src, 'wb') as f:
        for _ in range(args.size // run.MiB):
            f.write(os.urandom(run.MiB))
    print(f'stream_copy: {args.size >> 20} MiB object, median of {args.rounds} rounds')
    print(f'{"server":<8}{"upload s":>10}{"copy s":>9}{"delete s":>10}{"copy/upload":>13}')
    for kind in (['s3rver', 'rgw'] if args.server == 'both' else [args.server]):
        server = run.Server(kind, work)
        try:
            up, cp, rm = [], [], []
            for r in range(args.rounds):
                b = server.bucket()
                up.append(run.timed(lambda: run.put_object(server, b, 'tmp', src)))
                cp.append(run.timed(lambda: server.s3.copy_object(
                    Bucket=b, Key='final', CopySource={'Bucket': b, 'Key': 'tmp'},
                    MetadataDirective='REPLACE', Metadata={'mtime': str(time.time())})))
                rm.append(run.timed(lambda: server.s3.delete_object(Bucket=b, Key='tmp')))
            u, c, d = (statistics.median(x) for x in (up, cp, rm))
            print(f'{kind:<8}{u:>10.2f}{c:>9.2f}{d:>10.3f}{c / u:>13.2f}')
        finally:
            server.stop()


if __name__ == '__main__':
    main()
