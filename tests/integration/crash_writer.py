"""Workload for test_crash.py: runs until the file system under it dies (kill -9 of the daemon).

    crash_writer.py MOUNTDIR LOGFILE SEED

Mixed operations on names f0..f9 in MOUNTDIR: write a temporary file and rename it onto a
name (the usual atomic-replace pattern), overwrite a name in place, append, link a name to
another, unlink one. Before each operation it appends "begin OP NAME SHA" to LOGFILE, after
it returns 0 "done" (then fsync), so the checker knows, for every name, the last
acknowledged content and the one operation that may have been in flight. SHA is the SHA-256
of the name's content after the operation, or "absent".
"""
import hashlib
import os
import random
import sys

NAMES = [f'f{i}' for i in range(10)]


def main(mnt, logpath, seed):
    rnd = random.Random(seed)
    log = open(logpath, 'a', buffering=1)
    state = {}        # name -> bytes it holds (acknowledged)
    group = {}        # name -> frozenset of the names sharing its inode (hard links)

    def note(word, op, names, data):
        sha = hashlib.sha256(data).hexdigest() if data is not None else 'absent'
        for n in sorted(names):
            log.write(f'{word} {op} {n} {sha}\n')
        if word == 'done':
            log.flush()
            os.fsync(log.fileno())

    def leave(name):
        g = group.pop(name, frozenset([name])) - {name}
        for n in g:
            group[n] = g

    def write_all(names, data):
        for n in names:
            state[n] = data

    by_ino = {}                     # names left by earlier rounds (checked by the test)
    for n in NAMES:
        try:
            st = os.stat(os.path.join(mnt, n))
        except FileNotFoundError:
            continue
        with open(os.path.join(mnt, n), 'rb') as f:
            state[n] = f.read()
        by_ino.setdefault(st.st_ino if st.st_nlink > 1 else ('solo', n), set()).add(n)
    for names in by_ino.values():
        for n in names:
            group[n] = frozenset(names)
    k = 0
    while True:
        k += 1
        name = rnd.choice(NAMES)
        p = os.path.join(mnt, name)
        op = rnd.choice(['replace', 'replace', 'replace', 'overwrite', 'append', 'link',
                         'unlink'] if name in state else ['replace'])
        if op == 'replace':
            data = rnd.randbytes(rnd.choice([0, 100, 5000, 70000, 300000]))
            tmp = os.path.join(mnt, f'.tmp{k}')
            with open(tmp, 'wb') as f:
                f.write(data)
            note('begin', op, [name], data)
            os.rename(tmp, p)
            leave(name)
            group[name] = frozenset([name])
            state[name] = data
            note('done', op, [name], data)
        elif op in ('overwrite', 'append'):
            names = group[name]
            if op == 'overwrite':
                patch = rnd.randbytes(100)
                off = rnd.randrange(0, len(state[name]) + 1)
                data = bytearray(state[name])
                data[off:off + len(patch)] = patch
                data = bytes(data)
            else:
                patch = rnd.randbytes(1000)
                off = len(state[name])
                data = state[name] + patch
            note('begin', op, names, data)
            fd = os.open(p, os.O_WRONLY)
            try:
                os.pwrite(fd, patch, off)
            finally:
                os.close(fd)
            write_all(names, data)
            note('done', op, names, data)
        elif op == 'link' and len(group[name]) < len(NAMES):
            other = rnd.choice([n for n in NAMES if n not in group[name]])
            if other in state:
                note('begin', 'unlink', [other], None)
                os.unlink(os.path.join(mnt, other))
                leave(other)
                state.pop(other)
                note('done', 'unlink', [other], None)
            note('begin', op, [other], state[name])
            os.link(p, os.path.join(mnt, other))
            g = group[name] | {other}
            for n in g:
                group[n] = g
            state[other] = state[name]
            note('done', op, [other], state[name])
        elif op == 'unlink':
            note('begin', op, [name], None)
            os.unlink(p)
            leave(name)
            state.pop(name)
            note('done', op, [name], None)


if __name__ == '__main__':
    try:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    except OSError:
        sys.exit(0)          # the file system died under us: expected
