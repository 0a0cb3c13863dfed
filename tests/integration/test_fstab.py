"""/etc/fstab mounts: mount(8) -> mount.fuse3 -> bucketfs (docs/systemd.md).

`mount -T FSTAB MOUNTPOINT` (util-linux: use FSTAB instead of /etc/fstab) mounts a
fuse.bucketfs line the way boot or `mount /mnt/x` would: mount(8) runs mount.fuse3, which
runs `bucketfs SOURCE MOUNTPOINT -o OPTIONS` through /bin/sh, and waits for it. bucketfs
must be serving when that returns, and a failure must reach mount(8) as a nonzero exit
with bucketfs's one-line reason.

mount(8) clears $PATH (and $HOME) before it runs a helper, so /bin/sh looks for bucketfs
in its default path only (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin),
where `make install` puts it. Rather than install into the machine, the tests run mount(8)
in a private mount namespace (unshare -m) in which /usr/local/sbin is a directory holding
a link to this tree's bin/bucketfs; the FUSE mount lives in that namespace and is used
through /proc/PID/root. Needs root, unshare/nsenter, mount(8) and mount.fuse3.
"""
import os
import shutil
import subprocess
import time

import pytest

import conftest
from conftest import ACCESS_KEY, BIN_DIR, REGION, SECRET_KEY, _pids_serving
from helpers import s3_body

# mount(8)/fstab options bucketfs must accept and ignore (and rw, which FUSE takes)
FSTAB_ONLY = ["_netdev", "nofail", "noauto", "auto", "user", "users", "defaults", "rw",
              "x-systemd.automount", "x-systemd.idle-timeout=60", "x-systemd.mount-timeout=30",
              "x-systemd.requires=network-online.target", "comment=bucketfs"]
SH_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class MountNamespace:
    """A private mount namespace (held by a sleeping process) whose /usr/local/sbin is
    `sbin`; run() runs a command in it, path() names a path as seen from inside."""

    def __init__(self, sbin):
        self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                      "sleep", "3600"], stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        mine = os.readlink("/proc/self/ns/mnt")
        ok = conftest._wait(lambda: os.readlink(f"/proc/{self.pid}/ns/mnt") != mine, 10)
        assert ok, "unshare --mount did not make a mount namespace"
        res = self.run(["mount", "--bind", str(sbin), "/usr/local/sbin"])
        assert res.returncode == 0, res.stdout

    def run(self, argv, env=None, timeout=60):
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "--", *argv], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              start_new_session=True)

    def path(self, p):
        return f"/proc/{self.pid}/root{p}"

    def mounts(self):
        """[(source, mountpoint, type, options)] of the namespace."""
        with open(f"/proc/{self.pid}/mounts") as f:
            return [tuple(ln.split()[:4]) for ln in f]

    def is_mounted(self, mnt):
        return any(m[1] == str(mnt) for m in self.mounts())

    def close(self, mnt):
        pids = _pids_serving(str(mnt), "bucketfs")
        if self.is_mounted(mnt):
            if self.run(["fusermount3", "-u", str(mnt)]).returncode != 0:
                self.run(["fusermount3", "-uz", str(mnt)])
        for pid in pids:
            if not conftest._wait(lambda: not conftest._alive(pid), 30):
                os.kill(pid, 9)
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def fstab_env(test_dir):
    for tool in ("mount", "umount", "mount.fuse3", "unshare", "nsenter"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/sbin:/usr/sbin"):
            pytest.skip(f"{tool} not found (Debian: mount, util-linux, fuse3)")
    if os.geteuid() != 0:
        pytest.skip("mount -T and unshare --mount need root")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    return env


@pytest.fixture
def mount_ns(test_dir, fstab_env):
    """The namespace, its mountpoint test_dir/mnt, cleaned up after the test."""
    sbin = test_dir / "sbin"
    sbin.mkdir()
    (sbin / "bucketfs").symlink_to(BIN_DIR / "bucketfs")
    mnt = test_dir / "mnt"
    mnt.mkdir()
    ns = MountNamespace(sbin)
    ns.mnt = mnt
    yield ns
    ns.close(mnt)


def _fstab(test_dir, source, mnt, opts):
    f = test_dir / "fstab"
    f.write_text("# test fstab\n" + f"{source} {mnt} fuse.bucketfs {','.join(opts)} 0 0\n")
    return f


def _mount_opts(proxy, test_dir):
    return ["_netdev", "nofail", "allow_other", f"endpoint={proxy.endpoint}", "path_style",
            f"region={REGION}", f"cache_dir={test_dir / 'cache'}"]


def test_fstab_mount_through_mount8(proxy, bucket, s3, test_dir, fstab_env, mount_ns):
    ns, mnt = mount_ns, mount_ns.mnt
    fstab = _fstab(test_dir, bucket, mnt, _mount_opts(proxy, test_dir) + FSTAB_ONLY)
    res = ns.run(["mount", "-T", str(fstab), str(mnt)], env=fstab_env)
    assert res.returncode == 0, f"mount -T failed ({res.returncode}):\n{res.stdout}"
    # mount(8) waited for the helper: the daemon serves the mount now, in the background
    line = [m for m in ns.mounts() if m[1] == str(mnt)]
    assert line, f"mount returned 0 but {mnt} is not mounted"
    assert line[0][:3] == (bucket, str(mnt), "fuse.bucketfs"), line
    assert "allow_other" in line[0][3], line
    pids = _pids_serving(str(mnt), "bucketfs")
    assert len(pids) == 1, f"daemons serving {mnt}: {pids}"

    data = b"written through an fstab mount\n" * 1000
    os.mkdir(ns.path(f"{mnt}/sub"))
    with open(ns.path(f"{mnt}/sub/f.txt"), "wb") as f:
        f.write(data)
    with open(ns.path(f"{mnt}/sub/f.txt"), "rb") as f:
        assert f.read() == data
    assert s3_body(s3, bucket, "sub/f.txt") == data     # close-to-open: in S3 already

    res = ns.run(["umount", str(mnt)], env=fstab_env)
    assert res.returncode == 0, f"umount failed:\n{res.stdout}"
    assert not ns.is_mounted(mnt)
    assert conftest._wait(lambda: not conftest._alive(pids[0]), 60), \
        "the daemon did not exit after umount"
    assert s3_body(s3, bucket, "sub/f.txt") == data
    assert any(r.op == "PutObject" and r.key == "sub/f.txt" for r in proxy.requests()), \
        "the fstab mount did not go through the audit proxy"


@pytest.mark.parametrize("nofail", [False, True])
def test_fstab_mount_failure_reaches_mount8(proxy, bucket, test_dir, fstab_env, mount_ns,
                                            nofail):
    ns, mnt = mount_ns, mount_ns.mnt
    missing = bucket + "-missing"
    opts = [o for o in _mount_opts(proxy, test_dir) if nofail or o != "nofail"]
    fstab = _fstab(test_dir, missing, mnt, opts)
    t0 = time.monotonic()
    res = ns.run(["mount", "-T", str(fstab), str(mnt)], env=fstab_env)
    took = time.monotonic() - t0
    assert res.returncode != 0, f"mount -T of a missing bucket exited 0:\n{res.stdout}"
    assert not ns.is_mounted(mnt)
    assert res.stdout.splitlines() == [f"bucketfs: bucket '{missing}' does not exist at "
                                       f"{proxy.endpoint}"], res.stdout
    assert took < 10, f"the failure took {took:.1f}s"


def test_fstab_legacy_fuse_type_with_a_path(proxy, bucket, s3, test_dir, fstab_env, mount_ns):
    """`/path/to/bucketfs#BUCKET MNT fuse ...`: for a bucketfs outside the default path."""
    ns, mnt = mount_ns, mount_ns.mnt
    f = test_dir / "fstab"
    f.write_text(f"{BIN_DIR / 'bucketfs'}#{bucket} {mnt} fuse "
                 f"{','.join(_mount_opts(proxy, test_dir))} 0 0\n")
    res = ns.run(["mount", "-T", str(f), str(mnt)], env=fstab_env)
    assert res.returncode == 0, f"mount -T failed ({res.returncode}):\n{res.stdout}"
    with open(ns.path(f"{mnt}/legacy.txt"), "w") as out:
        out.write("legacy\n")
    assert s3_body(s3, bucket, "legacy.txt") == b"legacy\n"
    res = ns.run(["umount", str(mnt)], env=fstab_env)
    assert res.returncode == 0, res.stdout


def test_fstab_mount8_clears_path(proxy, bucket, test_dir, fstab_env):
    """bucketfs only on $PATH is not enough: mount(8) runs helpers without $PATH."""
    if shutil.which("bucketfs", path=SH_DEFAULT_PATH):
        pytest.skip("bucketfs is installed in the default path: cannot show it is needed")
    mnt = test_dir / "mnt"
    mnt.mkdir()
    fstab = _fstab(test_dir, bucket, mnt, _mount_opts(proxy, test_dir))
    env = dict(fstab_env, PATH=f"{BIN_DIR}:{fstab_env.get('PATH', SH_DEFAULT_PATH)}")
    res = subprocess.run(["mount", "-T", str(fstab), str(mnt)], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=60)
    if conftest.is_mounted(mnt):
        subprocess.run(["fusermount3", "-u", str(mnt)])
        pytest.fail("mount(8) found bucketfs on $PATH: docs/systemd.md says it does not")
    assert res.returncode != 0 and "bucketfs: not found" in res.stdout, res.stdout


def test_fstab_only_options_accepted_by_the_daemon(mount, bucket, s3):
    """The options mount(8) and mount.fuse3 may pass on, given to bucketfs directly: they
    mount and are ignored, with nothing said."""
    m = mount(bucket, opts=FSTAB_ONLY + ["dev", "suid", "noexec", "nosuid", "nodev"],
              daemon=True)
    with open(os.path.join(m.path, "x.txt"), "w") as f:
        f.write("ok\n")
    assert s3_body(s3, bucket, "x.txt") == b"ok\n"
    lines = [ln for ln in m.log_text().splitlines() if not ln.startswith("=== start")]
    assert lines == [], f"bucketfs said something about the options: {lines}"
