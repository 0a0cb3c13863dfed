"""--help and the man pages (docs/man/*.1) document every option the code parses.

No S3 server is needed. The option names come from the C sources, not from a list kept
here, so an option added to the code without docs fails these tests:

* bucketfs -o options: every string in fs/options.c's file-scope name arrays
  (`static const char *const NAME[] = {...}`: bucketfs's valued options, FUSE's, the
  ignored mount(8) ones), the `{"name", &o->field}` flag table, and every
  `strcmp(name, "...")` / `strncmp(name, "...", n)` (a prefix such as "x-");
* command-line flags: `strcmp(a, "-...")` in fs/options.c and `strcmp(argv[1], "-...")` in
  fs/main.c;
* the tools: every "-..." literal compared in tools/bucketfs-<tool>.c, and for
  bucketfs-cache the commands compared with `cmd`.

--help must name each (as a word of its own); the man page must name each in bold (the way
options are set in a man page), and every default --help states must be in the man
page's entry for that option.
"""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN_DIR, REPO

MAN = REPO / "docs" / "man"
OPTIONS_C = REPO / "fs" / "options.c"
MAIN_C = REPO / "fs" / "main.c"
NAME_CHARS = r"[A-Za-z0-9_.*-]"


# ---------------------------------------------------------------- the code ------------

def _c_source(path):
    """The C text without comments (string literals kept)."""
    text = path.read_text()
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def _literals(text):
    return re.findall(r'"((?:[^"\\]|\\.)*)"', text)


def bucketfs_mount_options():
    """({option names}, {option prefixes}) fs/options.c accepts after -o."""
    src = _c_source(OPTIONS_C)
    names, prefixes = set(), set()
    for body in re.findall(r"^static const char \*const \w+\[\]\s*=\s*\{(.*?)\};", src,
                           flags=re.S | re.M):
        names.update(_literals(body))
    names.update(re.findall(r'\{\s*"([^"]+)"\s*,\s*&o->', src))
    names.update(re.findall(r'\bstrcmp\(name,\s*"([^"]+)"\)', src))
    prefixes.update(re.findall(r'\bstrncmp\(name,\s*"([^"]+)"\s*,', src))
    names.discard("")
    assert len(names) > 40 and "endpoint" in names and "_netdev" in names, \
        f"the option tables of {OPTIONS_C} were not found (parsed: {sorted(names)})"
    return names, prefixes


def bucketfs_flags():
    """Command-line flags of bin/bucketfs (-f, --help, -u, ...)."""
    flags = set(re.findall(r'\bstrn?cmp\(a,\s*"(-[^"]+)"', _c_source(OPTIONS_C)))
    flags |= set(re.findall(r'\bstrcmp\(argv\[1\],\s*"(-[^"]+)"', _c_source(MAIN_C)))
    flags.discard("--")          # the end of the options, not an option
    assert {"-f", "-o", "--help"} <= flags, flags
    return flags


def tool_words(tool):
    """Flags (and, for bucketfs-cache, commands) a tool's main compares its arguments to."""
    src = _c_source(REPO / "tools" / f"{tool}.c")
    words = {w.rstrip("=") for w in re.findall(r'\bstrn?cmp\(\w+(?:\[\w+\])?,\s*"(-[^"]*)"', src)}
    words |= set(re.findall(r'\bstrcmp\(cmd,\s*"([a-z]+)"\)', src))
    words.discard("-")
    assert "--help" in words, f"no flags found in tools/{tool}.c"
    return words


# ---------------------------------------------------------------- the docs ------------

def help_text(program):
    res = subprocess.run([str(BIN_DIR / program), "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=10)
    assert res.returncode == 0, f"{program} --help: exit {res.returncode}: {res.stderr}"
    assert res.stdout.strip(), f"{program} --help printed nothing on stdout"
    return res.stdout


def _unescape(text):
    """roff escapes to plain characters (font changes dropped)."""
    text = re.sub(r"\\f(\[[A-Z]*\]|[BIRP])", "", text)
    for esc, plain in (("\\-", "-"), ("\\(ti", "~"), ("\\(dq", '"'), ("\\(bu", "*"),
                       ("\\(em", "--"), ("\\e", "\\"), ("\\&", ""), ("\\ ", " "),
                       ("\\~", " ")):
        text = text.replace(esc, plain)
    return text


def _macro_args(line):
    """Arguments of a roff request line, quotes honoured."""
    return [a[1:-1] if a.startswith('"') else a
            for a in re.findall(r'"[^"]*"|\S+', line)[1:]]


def man_bold(page):
    """Every word the man page sets in bold (.B, .BR, .BI, .RB, .IB, \\fB...)."""
    bold = []
    for line in page.splitlines():
        m = re.match(r"\.(B|BR|BI|RB|IB)\b", line)
        if m:
            args = _macro_args(line)
            first_bold = m.group(1) in ("B", "BR", "BI")
            bold += [a for i, a in enumerate(args)
                     if m.group(1) == "B" or (i % 2 == 0) == first_bold]
        bold += re.findall(r"\\fB(.*?)(?=\\f[A-Z\[]|$)", line)
    words = set()
    for b in bold:
        words.update(w.rstrip(".,;:") for w in re.findall(NAME_CHARS + "+", _unescape(b)))
    return words


def man_entries(page):
    """[(tag text, body text)] of the .TP entries, unescaped."""
    entries, tag, body, state = [], None, [], None
    for line in page.splitlines() + [".SH END"]:
        if line.startswith(".TP") or line.startswith(".TQ") or re.match(r"\.(SH|SS|PP)\b", line):
            if tag is not None and not line.startswith(".TQ"):
                entries.append((tag, " ".join(body)))
                tag, body = None, []
            state = "tag" if line.startswith((".TP", ".TQ")) else None
            continue
        if state == "tag":
            text = " ".join(_macro_args(line)) if line.startswith(".") else line
            tag = (tag + " " if tag else "") + _unescape(text)
            state = "body"
        elif state == "body":
            body.append(_unescape(" ".join(_macro_args(line)) if line.startswith(".") else line))
    return entries


def help_entries(text):
    """{option name: entry text} of --help's two-space indented entries."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^  (\S.*?)(?:\s{2,}(.*))?$", line)
        if m and not line.startswith("   "):
            names = re.findall(r"(?:^|,\s*)(-{0,2}[A-Za-z_][\w-]*)", m.group(1))
            current = names
            for n in names:
                out[n] = line
        elif current and line.startswith("   "):
            for n in current:
                out[n] += " " + line.strip()
        else:
            current = None
    return {k: re.sub(r"\s+", " ", v) for k, v in out.items()}


def defaults_in(entry):
    """The value-like words of the defaults an entry states ("(default 8M)", "(default:
    you)", "close-to-open (default)")."""
    words = []
    for phrase in re.findall(r"\bdefault:?\s+([^;)]*(?:\([^)]*\)[^;)]*)*)", entry):
        toks = [t.strip(".,;:()") for t in phrase.split()]
        toks = [t for t in toks if t]
        if toks:
            words.append(toks[0])
        words += [t for t in toks[1:] if re.search(r"[0-9$/~%\[]", t)]
    words += re.findall(r"(\S+) \(default\)", entry)
    return [w for w in words if w not in ("=", "is", "the")]


def _has_word(text, word):
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


# ---------------------------------------------------------------- tests ---------------

def _page(name):
    path = MAN / f"{name}.1"
    assert path.is_file(), f"{path} missing"
    return path.read_text()


def test_docs_man_pages_render_cleanly():
    if not shutil.which("groff"):
        pytest.skip("groff is not installed (Debian groff-base): man pages not rendered")
    for name in ("bucketfs", "bucketfs-fsck", "bucketfs-cache", "bucketfs-stat"):
        res = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN / f"{name}.1")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert res.returncode == 0 and res.stdout == "", f"{name}.1:\n{res.stdout}"
        th = re.escape(name.upper()).replace("\\-", r"\\?-")
        assert re.search(r"^\.TH " + th + " 1 ", _page(name), re.M), \
            f"{name}.1: no .TH line for section 1"
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS",
                        "EXAMPLES", "SEE ALSO"):
            assert re.search(rf'^\.SH "?{section}"?$', _page(name), re.M), \
                f"{name}.1: no {section} section"


def test_docs_bucketfs_options_in_help_and_man():
    names, prefixes = bucketfs_mount_options()
    help_ = help_text("bucketfs")
    bold = man_bold(_page("bucketfs"))
    missing_help = sorted(n for n in names if not _has_word(help_, n))
    missing_man = sorted(n for n in names if n not in bold)
    missing_help += sorted(p for p in prefixes if p not in help_)
    missing_man += sorted(p for p in prefixes if not any(w.startswith(p) for w in bold))
    assert not missing_help, f"bucketfs --help does not list: {missing_help}"
    assert not missing_man, f"docs/man/bucketfs.1 does not list (in bold): {missing_man}"


def test_docs_bucketfs_flags_in_help_and_man():
    flags = bucketfs_flags()
    help_ = help_text("bucketfs")
    bold = man_bold(_page("bucketfs"))
    assert not sorted(f for f in flags if not _has_word(help_, f)), \
        f"bucketfs --help does not list: {sorted(f for f in flags if not _has_word(help_, f))}"
    assert not sorted(f for f in flags if f not in bold), \
        f"docs/man/bucketfs.1 does not list: {sorted(f for f in flags if f not in bold)}"


def _check_defaults(program, page_name, names):
    entries = help_entries(help_text(program))
    man = man_entries(_page(page_name))
    checked, problems = 0, []
    for name, entry in sorted(entries.items()):
        if name not in names:
            continue
        want = defaults_in(entry)
        if not want:
            continue
        mine = [body for tag, body in man if _has_word(tag, name)]
        if not mine:
            problems.append(f"{name}: no man page entry (a .TP whose tag names it)")
            continue
        text = " ".join(mine)
        if not re.search(r"\bdefault", text, re.I):
            problems.append(f"{name}: the man page entry states no default")
        for w in want:
            if w not in text:
                problems.append(f"{name}: --help says default {w!r}, the man page entry "
                                f"does not ({text[:200]!r})")
        checked += 1
    assert checked > 0, f"no defaults found in {program} --help"
    assert not problems, f"{page_name}.1 vs {program} --help:\n" + "\n".join(problems)
    return checked


def test_docs_bucketfs_defaults_match():
    names, _ = bucketfs_mount_options()
    assert _check_defaults("bucketfs", "bucketfs", names) >= 15


@pytest.mark.parametrize("tool", ["bucketfs-fsck", "bucketfs-cache", "bucketfs-stat"])
def test_docs_tool_options_in_help_and_man(tool):
    words = tool_words(tool)
    help_ = help_text(tool)
    bold = man_bold(_page(tool))
    assert not sorted(w for w in words if not _has_word(help_, w)), \
        f"{tool} --help does not list: {sorted(w for w in words if not _has_word(help_, w))}"
    assert not sorted(w for w in words if w not in bold), \
        f"docs/man/{tool}.1 does not list: {sorted(w for w in words if w not in bold)}"
    # defaults stated in --help (fsck's parallel=) are in the man page too
    entries = help_entries(help_)
    if any(defaults_in(e) for e in entries.values()):
        _check_defaults(tool, tool, set(entries))


def test_docs_extraction_catches_an_undocumented_option(tmp_path, monkeypatch):
    """The checks fail for an option the docs do not know (what a new option looks like)."""
    src, n = re.subn(r"(static const char \*const valued\[\] = \{)", r'\1 "bfs_new_opt",',
                     OPTIONS_C.read_text())
    assert n == 1, "fs/options.c has no valued[] table any more: update this test"
    fake = tmp_path / "options.c"
    fake.write_text(src)
    monkeypatch.setitem(globals(), "OPTIONS_C", fake)
    names, _ = bucketfs_mount_options()
    assert "bfs_new_opt" in names
    assert not _has_word(help_text("bucketfs"), "bfs_new_opt")
    assert "bfs_new_opt" not in man_bold(_page("bucketfs"))
    # and a default the man page contradicts is found
    assert defaults_in("  parallel=N  concurrent S3 requests (default 16)") == ["16"]
    assert "17" not in " ".join(b for t, b in man_entries(_page("bucketfs"))
                                if _has_word(t, "parallel"))
