#!/usr/bin/env python3
"""debfetch.py — fetch Debian .debs (arm64 for the Backstop PostgreSQL client layer), verified.

Used by infra/pg-layer/build.sh (arm64) and infra/pg-server/fetch.sh (--arch of the host, for a
local PostgreSQL server); standard library only. For one Debian release (for example bookworm)
and one architecture (--arch, default arm64) it:

  1. downloads InRelease of <suite>, <suite>-updates and <suite>-security (the last from the
     security archive) and checks each one's OpenPGP signature with gpgv against the host's
     Debian archive keyring, keeping only the signed text (and refusing a Release whose
     Valid-Until has passed, or one that names another suite);
  2. downloads main/binary-arm64/Packages.xz of each, checking its size and SHA256 against the
     signed Release;
  3. merges the three indices (the highest version of each package wins, as apt would pick)
     and resolves the closure of the root packages' Depends/Pre-Depends, following only
     shared-library packages (lib*): PostgreSQL's perl wrappers, sensible-utils and the like
     are not needed by the ELF programs the layer ships; --exclude names packages not to take
     at all (libllvm19: only the server's optional JIT module, which is not shipped, needs it);
  4. downloads each .deb into the cache, checking its size and SHA256 against the index.

Everything is cached under --cache: indices are re-fetched only when older than --ttl-hours
(or with --refresh); with --offline (or when the network fails and a cache exists) the cached,
re-verified files are used as they are, so a rebuild is repeatable without network. The
resolution itself is cached, keyed by the verified Release files, so a warm run does not
re-parse the indices.

Writes a tab-separated list (package, version, suite, sha256, path of the cached .deb) to --list.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ARCH = "arm64"  # set from --arch in main()
COMPONENT = "main"
DEFAULT_MIRROR = "https://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "https://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Bump when the resolution logic changes, so cached resolutions are not reused.
RESOLVER_VERSION = "2"


def log(msg: str) -> None:
    print(f"debfetch: {msg}", file=sys.stderr, flush=True)


class FetchError(Exception):
    pass


# --- Debian version comparison (dpkg's verrevcmp) ---------------------------------------

def _order(c: str) -> int:
    if c == "":
        return 0
    if c.isdigit():
        return 0
    if c.isascii() and c.isalpha():
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i] if i < len(a) else "")
            bc = _order(b[j] if j < len(b) else "")
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        epoch = int(e)
    if "-" in v:
        upstream, revision = v.rsplit("-", 1)
    else:
        upstream, revision = v, ""
    return epoch, upstream, revision


def version_compare(a: str, b: str) -> int:
    """<0, 0, >0 as dpkg --compare-versions a lt/eq/gt b."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return ea - eb
    c = _verrevcmp(ua, ub)
    if c:
        return c
    return _verrevcmp(ra, rb)


def satisfies(version: str, op: str | None, wanted: str | None) -> bool:
    if op is None or wanted is None:
        return True
    c = version_compare(version, wanted)
    return {
        "<<": c < 0, "<": c <= 0, "<=": c <= 0,
        "=": c == 0,
        ">>": c > 0, ">": c >= 0, ">=": c >= 0,
    }[op]


# --- HTTP ---------------------------------------------------------------------------------

def http_get(url: str, dest: Path, attempts: int = 3) -> None:
    """Download url to dest (atomically, through a temporary file beside it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                req = urllib.request.Request(url, headers={"User-Agent": "backstop-pg-layer/1"})
                with urllib.request.urlopen(req, timeout=60) as resp:
                    while True:
                        chunk = resp.read(1 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
            os.replace(tmp, dest)
            return
        except (urllib.error.URLError, OSError, TimeoutError) as e:  # noqa: PERF203
            last = e
            Path(tmp).unlink(missing_ok=True)
            if isinstance(e, urllib.error.HTTPError) and e.code == 404:
                break
            if attempt < attempts:
                time.sleep(2 * attempt)
    raise FetchError(f"cannot download {url}: {last}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- Release files ------------------------------------------------------------------------

def parse_control(text: str) -> dict[str, str]:
    """One deb822 stanza into a dict (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t" and key is not None:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


def verify_inrelease(inrelease: Path, keyring: str) -> str:
    """Check the clearsigned InRelease with gpgv; return the signed text only."""
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "Release"
        proc = subprocess.run(
            ["gpgv", "--status-fd", "1", "--keyring", keyring, "--output", str(out), str(inrelease)],
            capture_output=True, text=True, check=False,
        )
        status = proc.stdout.splitlines()
        good = [s for s in status if s.startswith("[GNUPG:] VALIDSIG ")]
        bad = [s for s in status if s.startswith("[GNUPG:] BADSIG ")]
        # gpgv exits non-zero when one of several signatures is by a key it lacks (ERRSIG, a
        # newer release key); like apt, accept when at least one signature is valid and none bad.
        if not good or bad or not out.exists():
            raise FetchError(
                f"{inrelease}: no valid signature from a key in {keyring}\n"
                + proc.stderr.strip()
            )
        return out.read_text()


def release_date(fields: dict[str, str], name: str) -> float | None:
    v = fields.get(name)
    if not v:
        return None
    parsed = email.utils.parsedate_to_datetime(v)
    return parsed.timestamp()


class Index:
    """One suite of one archive: its verified Release and, lazily, its Packages."""

    def __init__(self, base_url: str, suite: str, cache: Path):
        self.base_url = base_url.rstrip("/")
        self.suite = suite
        self.dir = cache / "indices" / suite
        self.inrelease = self.dir / "InRelease"
        self.release_text = ""
        self.release: dict[str, str] = {}

    def _cached(self, keyring: str) -> tuple[str, dict[str, str]] | None:
        """The cached Release (signed text, fields), or None; a cache that fails the checks is dropped."""
        if not self.inrelease.exists():
            return None
        try:
            text = verify_inrelease(self.inrelease, keyring)
            fields = parse_control(text)
            self._check_identity(fields)
            return text, fields
        except FetchError as e:
            log(f"warning: dropping the cached {self.inrelease}: {e}")
            self.inrelease.unlink()
            return None

    def load_release(self, offline: bool, refresh: bool, ttl_hours: float, keyring: str) -> None:
        cached = self._cached(keyring)
        fresh = cached is not None and (time.time() - self.inrelease.stat().st_mtime) < ttl_hours * 3600
        fetched = False
        if not offline and (refresh or not fresh):
            url = f"{self.base_url}/dists/{self.suite}/InRelease"
            new = self.dir / "InRelease.new"
            try:
                http_get(url, new)
                new_text = verify_inrelease(new, keyring)
                new_fields = parse_control(new_text)
                self._check_identity(new_fields)
                until = release_date(new_fields, "Valid-Until")
                if until is not None and until < time.time():
                    raise FetchError(f"{url} expired at {new_fields['Valid-Until']} (stale mirror?)")
                if cached is not None:
                    old_d, new_d = release_date(cached[1], "Date"), release_date(new_fields, "Date")
                    if old_d and new_d and new_d < old_d:
                        raise FetchError(f"{url} is older ({new_fields['Date']}) than the cached one")
                os.replace(new, self.inrelease)
                cached = (new_text, new_fields)
                fetched = True
            except FetchError as e:
                new.unlink(missing_ok=True)
                if cached is None:
                    raise
                log(f"warning: {e}; using the cached {self.inrelease}")
        if cached is None:
            raise FetchError(f"--offline but nothing (valid) cached for {self.suite} in {self.dir}")
        self.release_text, self.release = cached
        if not fetched:
            until = release_date(self.release, "Valid-Until")
            if until is not None and until < time.time():
                log(f"warning: the cached Release of {self.suite} expired at {self.release['Valid-Until']}"
                    " (building from the cache; run without --offline to refresh)")
        log(f"{self.suite}: Release of {self.release.get('Date', '?')} (signature good)")

    def _check_identity(self, fields: dict[str, str]) -> None:
        if self.suite not in (fields.get("Codename"), fields.get("Suite")):
            raise FetchError(
                f"the Release for {self.suite} says Suite={fields.get('Suite')} "
                f"Codename={fields.get('Codename')}"
            )

    def packages_text(self, offline: bool) -> str:
        rel_path = f"{COMPONENT}/binary-{ARCH}/Packages.xz"
        want_sha, want_size = None, None
        for line in self.release.get("SHA256", "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] == rel_path:
                want_sha, want_size = parts[0], int(parts[1])
        if want_sha is None:
            raise FetchError(f"{self.suite}: the Release lists no {rel_path}")
        local = self.dir / f"{COMPONENT}_binary-{ARCH}_Packages.xz"
        if not (local.exists() and local.stat().st_size == want_size and sha256_file(local) == want_sha):
            if offline:
                raise FetchError(f"--offline but {local} is missing or does not match the Release")
            urls = [f"{self.base_url}/dists/{self.suite}/{rel_path}"]
            if self.release.get("Acquire-By-Hash", "").lower() == "yes":
                urls.insert(0, f"{self.base_url}/dists/{self.suite}/{COMPONENT}/binary-{ARCH}/by-hash/SHA256/{want_sha}")
            err: Exception | None = None
            for url in urls:
                try:
                    http_get(url, local)
                except FetchError as e:
                    err = e
                    continue
                if local.stat().st_size == want_size and sha256_file(local) == want_sha:
                    err = None
                    break
                err = FetchError(f"{url}: size or SHA256 differs from the signed Release")
                local.unlink()
            if err is not None:
                raise err
            log(f"{self.suite}: fetched {rel_path} ({want_size} bytes, SHA256 ok)")
        return lzma.decompress(local.read_bytes()).decode("utf-8", "replace")


# --- Packages indices and resolution ------------------------------------------------------

WANTED_FIELDS = ("Package", "Version", "Architecture", "Depends", "Pre-Depends", "Provides",
                 "Filename", "Size", "SHA256", "Source", "Section")


def parse_packages(text: str, suite: str, base_url: str):
    for stanza in text.split("\n\n"):
        if not stanza.strip():
            continue
        p: dict[str, str] = {}
        for line in stanza.split("\n"):
            if not line or line[0] in " \t":
                continue
            k, _, v = line.partition(":")
            if k in WANTED_FIELDS:
                p[k] = v.strip()
        if "Package" in p and "Version" in p and "Filename" in p:
            p["_suite"] = suite
            p["_base"] = base_url
            yield p


DEP_RE = re.compile(
    r"^\s*([a-z0-9][a-z0-9+.\-]*)(?::[a-z0-9\-]+)?\s*"
    r"(?:\(\s*(<<|<=|=|>=|>>|<|>)\s*([^)\s]+)\s*\))?\s*(?:\[[^\]]*\])?\s*(?:<[^>]*>\s*)*$"
)


def parse_relation(field: str) -> list[list[tuple[str, str | None, str | None]]]:
    groups = []
    for group in field.split(","):
        if not group.strip():
            continue
        alts = []
        for alt in group.split("|"):
            m = DEP_RE.match(alt)
            if not m:
                raise FetchError(f"cannot parse dependency {alt!r}")
            alts.append((m.group(1), m.group(2), m.group(3)))
        groups.append(alts)
    return groups


def followed(name: str, universe: "Universe") -> bool:
    """Shared-library packages (section libs, or named lib* as policy wants, e.g. zlib1g is not);
    the rest (perl wrappers, sensible-utils, readline-common...) is not needed by ELF programs.
    build.sh checks afterwards that every DT_NEEDED of the shipped programs is satisfied."""
    if name.startswith("lib"):
        return True
    cands = universe.by_name.get(name, [])
    return bool(cands) and cands[0].get("Section", "").rsplit("/", 1)[-1] in ("libs", "oldlibs")


class Universe:
    def __init__(self) -> None:
        self.by_name: dict[str, list[dict[str, str]]] = {}
        self.providers: dict[str, list[tuple[dict[str, str], str | None]]] = {}

    def add(self, p: dict[str, str]) -> None:
        if p.get("Architecture") not in (ARCH, "all"):
            return
        self.by_name.setdefault(p["Package"], []).append(p)

    def finish(self) -> None:
        for cands in self.by_name.values():
            cands.sort(key=_VersionKey, reverse=True)
            for p in cands:
                for alts in parse_relation(p.get("Provides", "")):
                    for name, op, ver in alts:
                        self.providers.setdefault(name, []).append((p, ver if op == "=" else None))

    def best(self, name: str, op: str | None, ver: str | None) -> dict[str, str] | None:
        for p in self.by_name.get(name, []):
            if satisfies(p["Version"], op, ver):
                return p
        if op is None:
            provs = self.providers.get(name, [])
            return provs[0][0] if provs else None
        for p, pv in self.providers.get(name, []):
            if pv is not None and satisfies(pv, op, ver):
                return p
        return None


class _VersionKey:
    def __init__(self, p: dict[str, str]):
        self.v = p["Version"]

    def __lt__(self, other: "_VersionKey") -> bool:
        return version_compare(self.v, other.v) < 0


def resolve(universe: Universe, roots: list[str], exclude: frozenset[str] = frozenset()) -> list[dict[str, str]]:
    chosen: dict[str, dict[str, str]] = {}
    queue: list[dict[str, str]] = []
    for r in roots:
        p = universe.best(r, None, None)
        if p is None:
            raise FetchError(f"no package {r} for {ARCH} in the indices")
        chosen[p["Package"]] = p
        queue.append(p)
    while queue:
        p = queue.pop(0)
        rel = ", ".join(x for x in (p.get("Pre-Depends"), p.get("Depends")) if x)
        for alts in parse_relation(rel):
            # Already satisfied by something chosen?
            if any(
                name in chosen and satisfies(chosen[name]["Version"], op, ver)
                for name, op, ver in alts
            ):
                continue
            libs = [a for a in alts if followed(a[0], universe) and a[0] not in exclude]
            if not libs:
                continue
            pick = None
            for name, op, ver in libs:
                if name in chosen:
                    raise FetchError(
                        f"{p['Package']} needs {name} ({op} {ver}) but {chosen[name]['Version']} was chosen"
                    )
                pick = universe.best(name, op, ver)
                if pick is not None:
                    break
            if pick is None:
                raise FetchError(f"{p['Package']}: cannot satisfy {' | '.join(a[0] for a in alts)}")
            if pick["Package"] not in chosen:
                chosen[pick["Package"]] = pick
                queue.append(pick)
    return sorted(chosen.values(), key=lambda x: x["Package"])


def fetch_deb(p: dict[str, str], debs: Path, offline: bool) -> Path:
    dest = debs / Path(p["Filename"]).name
    want_sha, want_size = p["SHA256"], int(p["Size"])
    if dest.exists() and dest.stat().st_size == want_size and sha256_file(dest) == want_sha:
        return dest
    if offline:
        raise FetchError(f"--offline but {dest} is not cached (or does not match the index)")
    url = f"{p['_base']}/{p['Filename']}"
    http_get(url, dest)
    if dest.stat().st_size != want_size or sha256_file(dest) != want_sha:
        dest.unlink()
        raise FetchError(f"{url}: size or SHA256 differs from the Packages index")
    log(f"fetched {dest.name} ({want_size} bytes, SHA256 ok)")
    return dest


def main() -> int:
    global ARCH
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--suite", required=True, help="Debian release codename, e.g. bookworm")
    ap.add_argument("--cache", required=True, type=Path)
    ap.add_argument("--list", required=True, type=Path, help="where to write the resolved list")
    ap.add_argument("--offline", action="store_true")
    ap.add_argument("--refresh", action="store_true")
    ap.add_argument("--ttl-hours", type=float, default=24.0)
    ap.add_argument("--keyring", default=KEYRING)
    ap.add_argument("--arch", default=ARCH, help="Debian architecture (default %(default)s)")
    ap.add_argument("--exclude", action="append", default=[], metavar="PACKAGE",
                    help="a dependency not to follow (repeatable)")
    ap.add_argument("roots", nargs="+")
    args = ap.parse_args()
    ARCH = args.arch

    mirror = os.environ.get("BACKSTOP_DEBIAN_MIRROR", DEFAULT_MIRROR)
    security = os.environ.get("BACKSTOP_DEBIAN_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR)
    indices = [
        Index(mirror, args.suite, args.cache),
        Index(mirror, f"{args.suite}-updates", args.cache),
        Index(security, f"{args.suite}-security", args.cache),
    ]
    try:
        for ix in indices:
            ix.load_release(args.offline, args.refresh, args.ttl_hours, args.keyring)

        key_src = json.dumps(
            [RESOLVER_VERSION, ARCH, args.roots, sorted(args.exclude), mirror, security]
            + [ix.release_text for ix in indices]
        ).encode()
        key = hashlib.sha256(key_src + Path(__file__).read_bytes()).hexdigest()
        # Per architecture: the layer (arm64) and a server (amd64) may share one cache.
        res_cache = args.cache / "resolved" / f"{args.suite}-{ARCH}-{key[:32]}.json"
        if res_cache.exists():
            chosen = json.loads(res_cache.read_text())
            log(f"resolution cached ({len(chosen)} packages)")
        else:
            universe = Universe()
            for ix in indices:
                for p in parse_packages(ix.packages_text(args.offline), ix.suite, ix.base_url):
                    universe.add(p)
            universe.finish()
            chosen = resolve(universe, args.roots, frozenset(args.exclude))
            res_cache.parent.mkdir(parents=True, exist_ok=True)
            for old in res_cache.parent.glob(f"{args.suite}-{ARCH}-*.json"):
                old.unlink()
            res_cache.write_text(json.dumps(chosen, indent=1))
            log(f"resolved {len(chosen)} packages")

        debs = args.cache / "debs"
        rows = []
        for p in chosen:
            path = fetch_deb(p, debs, args.offline)
            rows.append("\t".join([p["Package"], p["Version"], p["_suite"], p["SHA256"], str(path)]))
    except FetchError as e:
        log(f"error: {e}")
        return 1
    args.list.parent.mkdir(parents=True, exist_ok=True)
    args.list.write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
