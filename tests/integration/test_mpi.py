"""An MPI job on two mounts of one bucket with default options (tests/mpi/scratch.c): ranks
0-1 use mount A, ranks 2-3 mount B, standing in for two nodes. File per process read through
the other mount, a directory made by rank 0 and filled by all, slices of one large file,
removal of the other mount's files; every byte checked by the job, the objects by boto3.
bench/ runs the same job at 64 MiB per rank."""
import os
import subprocess
from pathlib import Path

import pytest

from helpers import s3_head, s3_keys

REPO = Path(__file__).resolve().parents[2]
# make integration says where its build put it (make test-asan builds into build-asan/)
SCRATCH = Path(os.environ.get('BFS_MPI_SCRATCH', REPO / 'build' / 'tests' / 'mpi' / 'scratch'))
SIZE = 3 << 20          # per rank: not a multiple of the 1 MiB block, over part_size for c.big


@pytest.mark.timeout(600)
def test_mpi_scratch_job_on_two_mounts(mount, bucket, s3):
    assert SCRATCH.exists(), f'{SCRATCH} is built by make integration (mpicc)'
    a, b = mount(bucket), mount(bucket)
    dirs = [a.path, a.path, b.path, b.path]
    res = subprocess.run(['mpiexec', '-n', '4', str(SCRATCH), str(SIZE + 12345), *dirs],
                         capture_output=True, text=True, timeout=540)
    assert res.returncode == 0, f'the job failed:\n{res.stdout}\n{res.stderr}\n' \
                                f'A: {a.log_text()[-2000:]}\nB: {b.log_text()[-2000:]}'
    assert 'all checks passed' in res.stdout
    keys = s3_keys(s3, bucket)
    assert sorted(keys) == ['b/', 'c.big'], keys       # d removed every a.R and b/R
    assert s3_head(s3, bucket, 'c.big')['ContentLength'] == 4 * (SIZE + 12345)
