#!/usr/bin/python3
"""A one-node Ceph RADOS Gateway on loopback, for tests, the demo and benchmarks.

    python3 tests/s3server/rgw.py start DIR   starts it, prints "endpoint http://127.0.0.1:PORT"
                                              and the pids (it keeps running in the background)
    python3 tests/s3server/rgw.py stop DIR    stops what `start DIR` started

or from Python: rgw = RGW(DIR).start(); rgw.endpoint; rgw.stop().

One monitor (msgr2 on 127.0.0.1), one OSD on memstore (data in memory), no mgr, auth off,
pools of size 1, and radosgw with the beast frontend; every socket is on 127.0.0.1, on free
ports picked at start. A user with the fixed keys ACCESS_KEY/SECRET_KEY is created, so the
same credentials work against s3rver and RGW. Everything (config, logs, run files) stays
under DIR; stop() ends only the processes this object started.

The Debian packages: ceph-mon ceph-osd radosgw (make deps installs them).
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ACCESS_KEY = SECRET_KEY = "S3RVER"
START_TIMEOUT = 90          # seconds for the whole cluster to answer a signed request


def answers_http(endpoint):
    """Whether anything answers HTTP at endpoint (an error status such as 403 counts)."""
    try:
        urllib.request.urlopen(endpoint + "/", timeout=2)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONF = """\
[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
public addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
# with auth off, the default "secure" modes make radosgw loop on an auth error
ms mon client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
run dir = {dir}/run
admin socket = {dir}/run/$name.asok
log file = {dir}/log/$name.log
pid file = {dir}/run/$name.pid
keyring = {dir}/keyring
mon data = {dir}/mon/$cluster-$id
osd data = {dir}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = {mem_bytes}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# pool creation waits for a paxos round: keep it short
paxos propose interval = 0.05
paxos min wait = 0.01
mon osd full ratio = 0.99
mon osd nearfull ratio = 0.98
mon osd backfillfull ratio = 0.985
osd max object name len = 2048
osd max object namespace len = 256
osd op num threads per shard = 1
osd op num shards = 2
debug ms = 0/0
log to stderr = false
err to stderr = true

[client.rgw.a]
# tcp_nodelay: without it small requests wait ~40 ms for delayed ACKs
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw data = {dir}/rgw
# Host: 127.0.0.1 and Host: localhost both mean path-style requests this way (test_tls's
# certificate is for localhost); with 127.0.0.1 here, RGW took "localhost" for a bucket name
rgw dns name = localhost
rgw enable usage log = false
rgw enable ops log = false
rgw thread pool size = 64
rgw gc obj min wait = 1
rgw gc processor period = 5
rgw gc processor max time = 5
rgw lc debug interval = 10
rgw max chunk size = 4194304
rgw curl low speed time = 300
"""


class RGW:
    def __init__(self, base, mem_bytes=6 << 30):
        self.dir = Path(base).resolve()
        self.mem_bytes = mem_bytes
        self.procs = []
        self.port = None
        self.endpoint = None
        self.log = self.dir / "log" / "client.rgw.a.log"

    # ------------------------------------------------------------ helpers --
    def _run(self, *argv, check=True):
        res = subprocess.run(list(argv) + ["-c", str(self.conf)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             timeout=120)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}):\n{res.stdout}")
        return res.stdout

    def _spawn(self, name, *argv):
        out = open(self.dir / "log" / f"{name}.out", "ab")
        p = subprocess.Popen(list(argv) + ["-f", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.procs.append(p)
        (self.dir / "pids").write_text("".join(f"{q.pid}\n" for q in self.procs))
        return p

    def _wait(self, what, cond, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited ({p.returncode}) while waiting for "
                                       f"{what}; logs in {self.dir / 'log'}")
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}; logs in {self.dir / 'log'}")

    # -------------------------------------------------------------- start --
    def start(self):
        for d in ("run", "log", "mon", "osd", "rgw"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        mon_port, self.port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.conf = self.dir / "ceph.conf"
        fsid = str(uuid.uuid4())
        self.conf.write_text(CONF.format(fsid=fsid, mon_port=mon_port, rgw_port=self.port,
                                         dir=self.dir, mem_bytes=self.mem_bytes))
        try:
            self._start(fsid, mon_port)
        except BaseException:
            self.stop()
            raise
        (self.dir / "endpoint").write_text(self.endpoint + "\n")
        return self

    def _start(self, fsid, mon_port):
        keyring, monmap = self.dir / "keyring", self.dir / "monmap"
        subprocess.run(["ceph-authtool", "--create-keyring", str(keyring), "--gen-key",
                        "-n", "mon.", "--cap", "mon", "allow *"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["monmaptool", "--create", "--clobber", "--fsid", fsid, "--addv", "a",
                        f"[v2:127.0.0.1:{mon_port}]", str(monmap)], check=True,
                       stdout=subprocess.DEVNULL)
        self._run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap),
                  "--keyring", str(keyring))
        self._spawn("mon.a", "ceph-mon", "-i", "a")

        def ceph(*args):
            return self._run("ceph", "--connect-timeout", "20", *args)
        osd_uuid = str(uuid.uuid4())
        osd_id = ceph("osd", "new", osd_uuid).strip().splitlines()[-1]
        (self.dir / "osd" / f"ceph-{osd_id}").mkdir(exist_ok=True)
        self._run("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        self._spawn(f"osd.{osd_id}", "ceph-osd", "-i", osd_id)
        self._wait("the OSD to come up",
                   lambda: '"num_up_osds":1' in ceph("osd", "stat", "-f", "json")
                   .replace(" ", ""), 60)
        self._spawn("client.rgw.a", "radosgw", "-n", "client.rgw.a")
        self._wait("radosgw to answer HTTP", lambda: answers_http(self.endpoint),
                   START_TIMEOUT)
        deadline = time.monotonic() + 60
        while True:     # radosgw creates its pools at start; the admin tool needs them
            res = subprocess.run(
                ["radosgw-admin", "-c", str(self.conf), "-n", "client.rgw.a", "user", "create",
                 "--uid", "bucketfs", "--display-name", "bucketfs tests",
                 "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=60)
            if res.returncode == 0 or "already exists" in res.stdout:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"radosgw-admin user create failed:\n{res.stdout}")
            time.sleep(0.5)

    def add_key(self, access_key, secret_key, uid=None):
        """Another S3 key pair: for the tests' user (uid None: the same account), or for a
        new user uid (a second account; one that exists is kept)."""
        if uid is None:
            argv = ["key", "create", "--uid", "bucketfs", "--key-type", "s3"]
        else:
            argv = ["user", "create", "--uid", uid, "--display-name", uid]
        res = subprocess.run(
            ["radosgw-admin", "-c", str(self.conf), "-n", "client.rgw.a"] + argv +
            ["--access-key", access_key, "--secret-key", secret_key],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=60)
        if res.returncode != 0 and "exists" not in res.stdout:
            raise RuntimeError(f"radosgw-admin {' '.join(argv[:2])} failed:\n{res.stdout}")

    # --------------------------------------------------------------- stop --
    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def _stop_dir(base):
    """Stops the processes a `start DIR` command left running (their pids are in DIR/pids)."""
    pids = Path(base, "pids")
    if not pids.exists():
        return
    for line in reversed(pids.read_text().split()):
        pid = int(line)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if Path(base).resolve().as_posix().encode() not in f.read() and \
                        b"ceph" not in open(f"/proc/{pid}/cmdline", "rb").read():
                    continue
            os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ProcessLookupError):
            continue
        for _ in range(150):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
    pids.unlink()


def main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    if argv[1] == "stop":
        _stop_dir(argv[2])
        return 0
    rgw = RGW(argv[2]).start()
    print(f"endpoint {rgw.endpoint}")
    print("pids " + " ".join(str(p.pid) for p in rgw.procs))
    rgw.procs = []          # leave them running
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
