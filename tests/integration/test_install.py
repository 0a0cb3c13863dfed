"""make install / make uninstall into a temp DESTDIR, and make dist builds on its own.

No S3 server is needed; these run with S3_SERVER=s3rver only (the RGW pass skips them,
saying so). The expected files come from the tree: bin/bucketfs, one program per
tools/bucketfs-*.c, one man page per docs/man/*.1.
"""
import filecmp
import os
import re
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

import conftest
from conftest import REPO

pytestmark = pytest.mark.skipif(conftest.on_rgw, reason="make install/dist do not depend on "
                                "the S3 server: tested in the S3_SERVER=s3rver run")

PROGRAMS = ["bucketfs"] + sorted(p.stem for p in (REPO / "tools").glob("bucketfs-*.c"))
MAN_PAGES = sorted(p.name for p in (REPO / "docs" / "man").glob("*.1"))


# The default build is what gets installed and packed, also when the suite runs under
# another make (make test-asan passes BUILD=, BIN= and SAN= down in MAKEFLAGS)
MAKE_ENV = {k: v for k, v in os.environ.items()
            if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def _make(*args, cwd=REPO, timeout=600):
    res = subprocess.run(["make", "-s", *args], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=timeout, env=MAKE_ENV)
    assert res.returncode == 0, f"make {' '.join(args)} failed:\n{res.stdout[-4000:]}"
    return res.stdout


def _files(root):
    """Every non-directory under root, relative."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _version():
    """BFS_VERSION from fs/options.c, as the Makefile reads it."""
    m = re.search(r'^#define BFS_VERSION "(.*)"$', (REPO / "fs" / "options.c").read_text(), re.M)
    assert m, "no BFS_VERSION in fs/options.c"
    return m.group(1)


@pytest.mark.parametrize("prefix", ["/usr/local", "/opt/bucketfs"])
def test_install_and_uninstall(test_dir, prefix):
    assert len(PROGRAMS) >= 3 and len(MAN_PAGES) >= 3, (PROGRAMS, MAN_PAGES)
    dest = test_dir / "dest"
    bindir = dest / prefix.lstrip("/") / "bin"
    mandir = dest / prefix.lstrip("/") / "share" / "man" / "man1"
    bindir.mkdir(parents=True)
    (bindir / "other-tool").write_text("#!/bin/sh\n")     # not ours: must survive
    _make("install", f"PREFIX={prefix}", f"DESTDIR={dest}")

    want = sorted([str((bindir / p).relative_to(dest)) for p in PROGRAMS + ["other-tool"]] +
                  [str((mandir / m).relative_to(dest)) for m in MAN_PAGES])
    assert _files(dest) == want
    for p in PROGRAMS:
        mode = stat.S_IMODE((bindir / p).stat().st_mode)
        assert mode == 0o755, f"{p}: mode {mode:o}"
        assert filecmp.cmp(bindir / p, REPO / "bin" / p, shallow=False), p
    for m in MAN_PAGES:
        assert stat.S_IMODE((mandir / m).stat().st_mode) == 0o644, m
        assert filecmp.cmp(mandir / m, REPO / "docs" / "man" / m, shallow=False), m
    out = subprocess.run([str(bindir / "bucketfs"), "--version"], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    assert out == f"bucketfs {_version()}\n"
    # man finds the installed page through MANPATH
    man = subprocess.run(["man", "-M", str(dest / prefix.lstrip("/") / "share" / "man"),
                          "-P", "cat", "1", "bucketfs-fsck"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=dict(os.environ, MANWIDTH="80"))
    assert man.returncode == 0 and "bucketfs-fsck" in man.stdout, man.stdout[:2000]

    _make("uninstall", f"PREFIX={prefix}", f"DESTDIR={dest}")
    assert _files(dest) == [str((bindir / "other-tool").relative_to(dest))]


def test_dist_tarball_builds_on_its_own(test_dir):
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout: make dist needs git ls-files")
    version = _version()
    out = _make("dist", f"DIST_DIR={test_dir}")
    tarball = test_dir / f"bucketfs-{version}.tar.gz"
    assert tarball.is_file(), out
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             check=True).stdout.split("\n")
    tracked = sorted(f for f in tracked if f)
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
        names = sorted(m.name for m in members if not m.isdir())
        assert all(m.name.startswith(f"bucketfs-{version}/") for m in members)
        assert names == [f"bucketfs-{version}/{f}" for f in tracked]
        assert all(m.uid == 0 and m.gid == 0 for m in members)
        tar.extractall(test_dir / "src")
    src = test_dir / "src" / f"bucketfs-{version}"
    assert not (src / "bin").exists() and not (src / "build").exists()
    _make("-j2", cwd=src, timeout=900)
    for p in PROGRAMS:
        assert os.access(src / "bin" / p, os.X_OK), f"the dist build made no bin/{p}"
    out = subprocess.run([str(src / "bin" / "bucketfs"), "--version"], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    assert out == f"bucketfs {version}\n"
    # outside a git checkout, make dist refuses instead of packing nothing
    res = subprocess.run(["make", "-s", "dist", f"DIST_DIR={test_dir / 'again'}"], cwd=src,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(MAKE_ENV, GIT_CEILING_DIRECTORIES=str(src.parent)))
    assert res.returncode != 0 and "needs a git checkout" in res.stdout, res.stdout
    assert not (test_dir / "again").exists() or not any((test_dir / "again").iterdir())
