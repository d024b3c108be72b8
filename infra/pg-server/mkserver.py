#!/usr/bin/env python3
"""mkserver.py — lay out a local PostgreSQL server tree (host arch) from the .debs debfetch.py fetched.

Used by infra/pg-server/fetch.sh, for the integration tests: a PostgreSQL major that the host's
Debian release does not carry (17 on bookworm), taken from the Debian release that does
(trixie), which needs a newer glibc than the host's. It reuses infra/pg-layer/mklayer.py's steps
and writes, under --tree (which fetch.sh then moves to --final):

  usr/lib/postgresql/<major>/{bin,lib}/   Debian's programs and loadable modules (contrib
                                          included), patched; not the JIT (llvmjit.so, bitcode/),
                                          which would pull in LLVM and is optional
  usr/share/postgresql/<major>/           Debian's share directory
  bin -> usr/lib/postgresql/<major>/bin   what callers use
  lib/                                    every shared library those need, by SONAME, glibc too
  VERSION                                 the packages used

Debian's layout is kept because PostgreSQL finds its share and pkglib directories relative to its
own (symlink-resolved) executable, as the compiled-in bindir/sharedir/pkglibdir are placed. Each
program gets PT_INTERP <final>/lib/ld-linux-*.so.* (an absolute path: the tree is not relocatable,
fetch.sh rebuilds it when it moves) and DT_RPATH to lib/; modules and libraries DT_RPATH too, so
neither the host's glibc nor LD_LIBRARY_PATH gets in (see infra/pg-layer/README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in infra/pg-layer
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pg-layer"))
import mklayer as ml  # noqa: E402

# Debian arch -> (ELF e_machine, multiarch triplet, loader SONAME, patchelf page size).
ARCHES = {
    "amd64": (62, "x86_64-linux-gnu", "ld-linux-x86-64.so.2", "4096"),
    "arm64": (ml.EM_AARCH64, "aarch64-linux-gnu", "ld-linux-aarch64.so.1", "65536"),
}
# The JIT provider and its inlining bitcode: libLLVM is ~120 MB; without them the server simply
# runs without JIT.
SKIP = ("llvmjit.so", "llvmjit_types.bc", "bitcode")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--list", required=True, type=Path)
    ap.add_argument("--major", required=True)
    ap.add_argument("--arch", required=True, choices=sorted(ARCHES))
    ap.add_argument("--work", required=True, type=Path, help="scratch directory (emptied)")
    ap.add_argument("--tree", required=True, type=Path, help="tree to create (must not exist)")
    ap.add_argument("--final", required=True, type=Path, help="absolute path the tree will be moved to")
    args = ap.parse_args()
    try:
        build(args)
    except ml.LayerError as e:
        print(f"mkserver: error: {e}", file=sys.stderr)
        return 1
    return 0


def build(args: argparse.Namespace) -> None:
    machine, triplet, loader, page = ARCHES[args.arch]
    packages = ml.read_list(args.list)
    server_pkgs = [f"postgresql-{args.major}", f"postgresql-client-{args.major}"]
    for p in server_pkgs:
        if p not in packages:
            raise ml.LayerError(f"{p} is not in {args.list}")
    xroot = ml.extract(packages, args.work)
    lib_dirs = (f"lib/{triplet}", f"usr/lib/{triplet}", "lib", "usr/lib")
    by_soname = ml.index_sonames(xroot, packages, lib_dirs, machine, loader)

    tree, final = args.tree, args.final
    pgdirs = (f"usr/lib/postgresql/{args.major}", f"usr/share/postgresql/{args.major}")
    for p in server_pkgs:
        for d in pgdirs:
            if (xroot / p / d).is_dir():
                shutil.copytree(xroot / p / d, tree / d, symlinks=True, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(*SKIP))
    (tree / "bin").symlink_to(f"usr/lib/postgresql/{args.major}/bin")

    # Programs (they have a PT_INTERP) and modules in bin/ and lib/, and the libraries they need.
    objs = [f for d in ("bin", "lib") for f in sorted((tree / pgdirs[0] / d).iterdir())
            if f.is_file() and not f.is_symlink() and ml.is_elf(f, machine)]
    wanted = ml.needed_closure(objs, by_soname)
    libdir = tree / "lib"
    libdir.mkdir()
    for so in sorted(wanted):
        shutil.copy(by_soname[so][1], libdir / so)  # keeps the mode (the loader must be executable)

    interp = str(final / "lib" / loader)
    for f in objs:
        rpath = "$ORIGIN/" + os.path.relpath(libdir, f.parent)
        ml.patch_elf(f, rpath, page, interp if ml.interpreter(f) else None)
    for so in sorted(wanted - {loader}):  # the loader needs nothing and is never searched for
        ml.patch_elf(libdir / so, "$ORIGIN", page)
    shipped = objs + [libdir / so for so in wanted]
    fixed = [f for f in shipped if ml.fix_gnu_property(f)]
    if fixed:
        print(f"mkserver: re-pointed PT_GNU_PROPERTY in {len(fixed)} files after patchelf", file=sys.stderr)

    # Check: interpreter, no DT_RUNPATH, every DT_NEEDED shipped, valid notes.
    problems = []
    for f in shipped:
        dyn = ml.dynamic(f)
        if dyn["RUNPATH"] or (f.name != loader and len(dyn["RPATH"]) != 1):
            problems.append(f"{f.name}: RPATH {dyn['RPATH']} RUNPATH {dyn['RUNPATH']}")
        problems += [f"{f.name}: needs {n}, not shipped" for n in dyn["NEEDED"] if n not in wanted]
        if f.parent != libdir and ml.interpreter(f) not in (None, interp):
            problems.append(f"{f.name}: interpreter {ml.interpreter(f)}")
        problems += ml.check_notes(f)
    if problems:
        raise ml.LayerError("the patched tree is wrong:\n  " + "\n  ".join(problems))

    lines = [f"# PostgreSQL server tree (infra/pg-server/fetch.sh), {args.arch}, for {final}"]
    lines += [f"package {n} {p['version']} {p['suite']} {p['sha256']}" for n, p in sorted(packages.items())]
    (tree / "VERSION").write_text("\n".join(lines) + "\n")
    print(f"mkserver: {tree}: {len(objs)} programs and modules, {len(wanted)} libraries", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
