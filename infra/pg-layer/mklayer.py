#!/usr/bin/env python3
"""mklayer.py — lay out the Backstop PostgreSQL client layer from the .debs debfetch.py fetched.

Used by infra/pg-layer/build.sh. Given the resolved list of .debs it extracts them
(dpkg-deb -x) and writes a layer tree (what Lambda extracts under /opt):

  bin/{pg_dump,pg_dumpall,pg_restore,psql}    the real arm64 ELF programs
  backstop-pg/lib/                            every shared library they load, under its SONAME,
                                              including glibc (libc.so.6, ld-linux-aarch64.so.1)
  backstop-pg/share/doc/<package>/copyright   the licences of the packages shipped
  backstop-pg/VERSION                         PG major, versions of the packages shipped

and patches the ELF files with patchelf so that nothing is looked up in Lambda's
LD_LIBRARY_PATH (/var/lang/lib:/lib64:/usr/lib64:...:/opt/lib) or the system's glibc:

  * programs: PT_INTERP /opt/backstop-pg/lib/ld-linux-aarch64.so.1 and
    DT_RPATH $ORIGIN/../backstop-pg/lib (DT_RPATH is searched before LD_LIBRARY_PATH,
    DT_RUNPATH would be searched after it);
  * libraries (except the loader itself): DT_RPATH $ORIGIN, and no DT_RUNPATH (an object
    with a DT_RUNPATH makes glibc ignore every DT_RPATH for its own dependencies).

Then it checks the result with readelf: the interpreter and rpaths, and that every DT_NEEDED of
every shipped object is in backstop-pg/lib. Nothing goes to lib/ (that is /opt/lib, which is on
LD_LIBRARY_PATH for the function's own bootstrap binary).

infra/pg-server/mkserver.py imports the generic steps (read_list, extract, index_sonames,
needed_closure, patch_elf, the readelf and PT_GNU_PROPERTY helpers) for a host-arch server tree.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

PROGRAMS = ("pg_dump", "pg_dumpall", "pg_restore", "psql")
LIB_SUBDIR = "backstop-pg/lib"
LOADER = "ld-linux-aarch64.so.1"
INTERP = f"/opt/{LIB_SUBDIR}/{LOADER}"
PROGRAM_RPATH = "$ORIGIN/../backstop-pg/lib"
LIBRARY_RPATH = "$ORIGIN"
# Directories of a package that hold shared libraries (top level only: gconv, sasl2, krb5
# plugin and OpenSSL module subdirectories are not shipped).
LIB_DIRS = ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib", "usr/lib")
# Shipped whole even where no DT_NEEDED names them: glibc's own libraries (libc dlopens NSS
# modules) and libgcc_s (glibc dlopens it to unwind at thread cancellation/exit).
ALWAYS_PACKAGES = ("libc6", "libgcc-s1")
# The zip stores this time for every file, so that the same packages give the same zip.
FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z
EM_AARCH64 = 183
PT_LOAD, PT_NOTE, PT_GNU_PROPERTY = 1, 4, 0x6474E553
NT_GNU_PROPERTY_TYPE_0 = 5


def log(msg: str) -> None:
    print(f"mklayer: {msg}", file=sys.stderr, flush=True)


class LayerError(Exception):
    pass


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LayerError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def is_elf(path: Path, machine: int = EM_AARCH64) -> bool:
    """A 64-bit little-endian ELF file for that e_machine."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return (
        len(head) == 20 and head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 1
        and int.from_bytes(head[18:20], "little") == machine
    )


DYN_RE = re.compile(r"\((NEEDED|SONAME|RPATH|RUNPATH)\)\s+[^\[]*\[(.*)\]")


def dynamic(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"NEEDED": [], "SONAME": [], "RPATH": [], "RUNPATH": []}
    for line in run(["readelf", "-dW", str(path)]).splitlines():
        m = DYN_RE.search(line)
        if m:
            out[m.group(1)].append(m.group(2))
    return out


def interpreter(path: Path) -> str | None:
    m = re.search(r"\[Requesting program interpreter: (.*)\]", run(["readelf", "-lW", str(path)]))
    return m.group(1) if m else None


def resolve_in(root: Path, path: Path) -> Path:
    """Follow symlinks of a file inside an extracted package, keeping absolute targets inside it."""
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
        path = Path(os.path.normpath(path))
    raise LayerError(f"symlink loop at {path}")


# --- ELF program headers: patchelf 0.14 leaves PT_GNU_PROPERTY stale ------------------------
# To grow the program header table patchelf moves the sections behind it (.interp, the notes)
# and updates PT_INTERP and PT_NOTE, but not PT_GNU_PROPERTY, which then points into the new
# program headers. Debian trixie's arm64 objects carry that note (BTI/PAC); Linux and qemu
# refuse to exec a program whose PT_GNU_PROPERTY is not a valid note ("Invalid note in
# PT_GNU_PROPERTY", ENOEXEC). fix_gnu_property() points it at the moved .note.gnu.property
# section; check_notes() verifies every PT_NOTE/PT_GNU_PROPERTY of every shipped object.

def _elf(data: bytes):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise LayerError("not a 64-bit little-endian ELF file")
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 0x20)
    e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    phdrs = [(e_phoff + i * e_phentsize, list(struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize)))
             for i in range(e_phnum)]
    shdrs = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
    names = {}
    if shdrs and e_shstrndx < len(shdrs):
        strtab = shdrs[e_shstrndx][4]
        for sh in shdrs:
            end = data.index(b"\0", strtab + sh[0])
            names.setdefault(data[strtab + sh[0]:end].decode(), []).append(sh)
    return phdrs, names


def fix_gnu_property(path: Path) -> bool:
    data = bytearray(path.read_bytes())
    phdrs, sections = _elf(data)
    changed = False
    for off, ph in phdrs:
        if ph[0] != PT_GNU_PROPERTY:
            continue
        secs = sections.get(".note.gnu.property", [])
        if len(secs) != 1:
            raise LayerError(f"{path.name}: PT_GNU_PROPERTY but {len(secs)} .note.gnu.property sections")
        sh = secs[0]  # name type flags addr offset size link info addralign entsize
        new = [ph[0], ph[1], sh[4], sh[3], sh[3], sh[5], sh[5], ph[7]]
        if new != ph:
            struct.pack_into("<IIQQQQQQ", data, off, *new)
            changed = True
    if changed:
        path.write_bytes(bytes(data))
    return changed


def check_notes(path: Path) -> list[str]:
    data = path.read_bytes()
    phdrs, _ = _elf(data)
    loads = [ph for _, ph in phdrs if ph[0] == PT_LOAD]
    problems = []
    for _, ph in phdrs:
        if ph[0] not in (PT_NOTE, PT_GNU_PROPERTY):
            continue
        kind = "PT_GNU_PROPERTY" if ph[0] == PT_GNU_PROPERTY else "PT_NOTE"
        p_offset, p_vaddr, p_filesz = ph[2], ph[3], ph[5]
        if not any(ld[2] <= p_offset and p_offset + p_filesz <= ld[2] + ld[5]
                   and p_vaddr - ld[3] == p_offset - ld[2] for ld in loads):
            problems.append(f"{path.name}: {kind} at {p_offset:#x} is not inside a PT_LOAD as mapped")
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos < end:
            if pos + 12 > end:
                problems.append(f"{path.name}: {kind} at {p_offset:#x} has a truncated note")
                break
            namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
            align = 8 if ph[7] == 8 else 4
            name_end = pos + 12 + namesz
            desc_end = ((name_end + align - 1) // align) * align + descsz
            if desc_end > end:
                problems.append(f"{path.name}: {kind} at {p_offset:#x} holds an invalid note")
                break
            if ph[0] == PT_GNU_PROPERTY and (ntype != NT_GNU_PROPERTY_TYPE_0 or data[pos + 12:name_end] != b"GNU\0"):
                problems.append(f"{path.name}: PT_GNU_PROPERTY at {p_offset:#x} is not a GNU property note")
                break
            pos = ((desc_end + align - 1) // align) * align
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--list", required=True, type=Path)
    ap.add_argument("--major", required=True)
    ap.add_argument("--suite", required=True)
    ap.add_argument("--work", required=True, type=Path, help="scratch directory (emptied)")
    ap.add_argument("--tree", required=True, type=Path, help="layer tree to create (must not exist)")
    ap.add_argument("--page-size", default="65536",
                    help="alignment patchelf uses for segments it adds (64 KiB suits 4K and 64K kernels)")
    args = ap.parse_args()
    try:
        build(args)
    except LayerError as e:
        log(f"error: {e}")
        return 1
    return 0


def read_list(path: Path) -> dict[str, dict]:
    """debfetch.py's list: package -> version, suite, sha256, deb."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return {name: {"version": ver, "suite": suite, "sha256": sha, "deb": Path(deb)}
            for name, ver, suite, sha, deb in rows}


def extract(packages: dict[str, dict], work: Path) -> Path:
    """dpkg-deb -x each package into <work>/x/<package>/ (work is emptied); returns <work>/x."""
    shutil.rmtree(work, ignore_errors=True)
    xroot = work / "x"
    for name, p in packages.items():
        (xroot / name).mkdir(parents=True)
        run(["dpkg-deb", "-x", str(p["deb"]), str(xroot / name)])
    return xroot


def index_sonames(xroot: Path, packages, lib_dirs=LIB_DIRS, machine: int = EM_AARCH64,
                  loader: str = LOADER) -> dict[str, tuple[str, Path]]:
    """Every shared object of that machine in the packages' library directories, by SONAME."""
    by_soname: dict[str, tuple[str, Path]] = {}
    for name in sorted(packages):
        root = xroot / name
        for d in lib_dirs:
            for entry in sorted((root / d).glob("*")) if (root / d).is_dir() else []:
                real = resolve_in(root, entry)
                if not real.is_file() or not is_elf(real, machine):
                    continue
                dyn = dynamic(real)
                soname = dyn["SONAME"][0] if dyn["SONAME"] else real.name
                if soname != entry.name and entry.name != real.name:
                    # A development or versioned alias (libfoo.so -> libfoo.so.1.2.3); skip.
                    continue
                prev = by_soname.get(soname)
                if prev and prev[1] != real:
                    if prev[0] != name:
                        raise LayerError(f"{soname} is in both {prev[0]} and {name}")
                    continue
                by_soname[soname] = (name, real)
    if loader not in by_soname:
        raise LayerError(f"no {loader} in the packages (is libc6 in the list?)")
    return by_soname


def needed_closure(objects: list[Path], by_soname: dict[str, tuple[str, Path]],
                   always=ALWAYS_PACKAGES) -> set[str]:
    """The SONAMEs the objects need (DT_NEEDED, transitively), plus all of the always packages'."""
    wanted = {so for so, (pkg, _) in by_soname.items() if pkg in always}
    queue = list(objects) + [by_soname[so][1] for so in sorted(wanted)]
    missing: dict[str, set[str]] = {}
    seen: set[Path] = set()
    while queue:
        obj = queue.pop()
        if obj in seen:
            continue
        seen.add(obj)
        for need in dynamic(obj)["NEEDED"]:
            if need not in by_soname:
                missing.setdefault(need, set()).add(obj.name)
                continue
            if need not in wanted:
                wanted.add(need)
            queue.append(by_soname[need][1])
    if missing:
        raise LayerError("unresolved DT_NEEDED: " + "; ".join(
            f"{so} (needed by {', '.join(sorted(users))})" for so, users in sorted(missing.items())))
    return wanted


def patch_elf(path: Path, rpath: str, page_size: str, interp: str | None = None) -> None:
    """DT_RPATH only (no DT_RUNPATH, see above), and the interpreter of a program."""
    run(["patchelf", "--remove-rpath", str(path)])
    interp_args = ["--set-interpreter", interp] if interp else []
    run(["patchelf", "--page-size", page_size, *interp_args, "--force-rpath", "--set-rpath", rpath, str(path)])


def build(args: argparse.Namespace) -> None:
    packages = read_list(args.list)
    client = f"postgresql-client-{args.major}"
    if client not in packages:
        raise LayerError(f"{client} is not in {args.list}")
    xroot = extract(packages, args.work)
    by_soname = index_sonames(xroot, packages)

    # Programs, and the closure of what they need.
    bin_src = xroot / client / "usr/lib/postgresql" / args.major / "bin"
    programs = {prog: bin_src / prog for prog in PROGRAMS}
    for prog, path in programs.items():
        if not (path.is_file() and is_elf(path)):
            raise LayerError(f"{path} is missing or not an arm64 ELF program")
    wanted = needed_closure(list(programs.values()), by_soname)

    # Lay out the tree.
    tree = args.tree
    if tree.exists():
        raise LayerError(f"{tree} already exists")
    (tree / "bin").mkdir(parents=True)
    libdir = tree / LIB_SUBDIR
    libdir.mkdir(parents=True)
    for prog, path in programs.items():
        shutil.copyfile(path, tree / "bin" / prog)
    shipped_pkgs = {client}
    for so in sorted(wanted):
        pkg, real = by_soname[so]
        shutil.copyfile(real, libdir / so)
        shipped_pkgs.add(pkg)

    # Patch.
    for prog in PROGRAMS:
        patch_elf(tree / "bin" / prog, PROGRAM_RPATH, args.page_size, INTERP)
    for so in sorted(wanted):
        if so == LOADER:
            continue  # the loader needs nothing and is never searched for
        patch_elf(libdir / so, LIBRARY_RPATH, args.page_size)
    fixed = [f.name for f in [*(tree / "bin").iterdir(), *libdir.iterdir()] if fix_gnu_property(f)]
    if fixed:
        log(f"re-pointed PT_GNU_PROPERTY in {len(fixed)} files after patchelf")

    # Licences.
    docs = tree / "backstop-pg/share/doc"
    for pkg in sorted(shipped_pkgs):
        src = find_copyright(xroot, pkg)
        (docs / pkg).mkdir(parents=True)
        shutil.copyfile(src, docs / pkg / "copyright")

    write_version(tree, args, packages, shipped_pkgs, client)
    check(tree)
    normalise(tree)
    log(f"{tree}: {len(PROGRAMS)} programs, {len(wanted)} libraries from {len(shipped_pkgs)} packages")


def find_copyright(xroot: Path, pkg: str) -> Path:
    """usr/share/doc/<pkg>/copyright; some packages' doc dir is a symlink to a sibling's."""
    root = xroot / pkg
    doc = root / "usr/share/doc" / pkg
    if doc.is_symlink():
        target = Path(os.readlink(doc)).name
        for other in sorted(xroot.iterdir()):
            cand = other / "usr/share/doc" / target / "copyright"
            if cand.is_file() and not cand.is_symlink():
                return cand
    cand = doc / "copyright"
    if cand.is_file():
        return resolve_in(root, cand)
    raise LayerError(f"no copyright file for {pkg}")


def write_version(tree: Path, args: argparse.Namespace, packages: dict, shipped: set[str], client: str) -> None:
    pg_version = packages[client]["version"]
    upstream = re.sub(r"^\d+:", "", pg_version).split("-")[0]
    lines = [
        "# Backstop PostgreSQL client layer (infra/pg-layer/build.sh)",
        f"PG_MAJOR={args.major}",
        f"PG_VERSION={upstream}",
        f"DEBIAN_SUITE={args.suite}",
        "ARCH=arm64",
        f"PROGRAMS={' '.join(PROGRAMS)}",
        f"INTERPRETER={INTERP}",
        "# package version suite sha256-of-deb (the packages whose files are shipped)",
    ]
    for name in sorted(shipped):
        p = packages[name]
        lines.append(f"package {name} {p['version']} {p['suite']} {p['sha256']}")
    (tree / "backstop-pg/VERSION").write_text("\n".join(lines) + "\n")


def check(tree: Path) -> None:
    top = sorted(p.name for p in tree.iterdir())
    if top != ["backstop-pg", "bin"]:
        raise LayerError(f"the layer's top level is {top}, want only bin/ and backstop-pg/")
    libdir = tree / LIB_SUBDIR
    present = {p.name for p in libdir.iterdir()}
    problems = []
    for prog in PROGRAMS:
        f = tree / "bin" / prog
        dyn = dynamic(f)
        if interpreter(f) != INTERP:
            problems.append(f"{prog}: interpreter {interpreter(f)}")
        if dyn["RPATH"] != [PROGRAM_RPATH] or dyn["RUNPATH"]:
            problems.append(f"{prog}: RPATH {dyn['RPATH']} RUNPATH {dyn['RUNPATH']}")
        problems += [f"{prog}: needs {n}, not shipped" for n in dyn["NEEDED"] if n not in present]
    for so in sorted(present):
        dyn = dynamic(libdir / so)
        if so != LOADER and (dyn["RPATH"] != [LIBRARY_RPATH] or dyn["RUNPATH"]):
            problems.append(f"{so}: RPATH {dyn['RPATH']} RUNPATH {dyn['RUNPATH']}")
        problems += [f"{so}: needs {n}, not shipped" for n in dyn["NEEDED"] if n not in present]
    for f in [*(tree / "bin").iterdir(), *libdir.iterdir()]:
        problems += check_notes(f)
    if problems:
        raise LayerError("the patched layer is wrong:\n  " + "\n  ".join(problems))


def normalise(tree: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        d = Path(dirpath)
        for name in filenames:
            f = d / name
            executable = d.name == "bin" or name == LOADER
            os.chmod(f, 0o755 if executable else 0o644)
            os.utime(f, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
        os.chmod(d, 0o755)
    for dirpath, _, _ in os.walk(tree, topdown=False):
        os.utime(dirpath, (FIXED_MTIME, FIXED_MTIME))


if __name__ == "__main__":
    sys.exit(main())
