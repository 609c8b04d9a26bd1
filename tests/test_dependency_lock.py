"""The Python dependency lock (issue 20): `make install` installs exact versions with every file's SHA-256
checked (`--require-hashes`), every requirement is in the lock at a version its range admits, and the
versions with known advisories are out (requests < 2.32.4, cryptography < 44.0.1)."""
from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SAFE_MINIMUM = {"requests": Version("2.32.4"), "cryptography": Version("44.0.1")}


def requirements(name: str) -> list[Requirement]:
    found = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def locked() -> dict[str, tuple[Version, int]]:
    """name → (pinned version, number of hashes)."""
    text = (ROOT / "requirements-dev.lock").read_text()
    pins = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9._-]+)==([^ \\\n]+)", block)
        if match:
            pins[canonicalize_name(match[1])] = (Version(match[2]), block.count("--hash=sha256:"))
    return pins


def test_every_requirement_is_locked_at_a_version_its_range_admits_with_hashes() -> None:
    pins = locked()
    stale = []
    for requirement in requirements("requirements.txt") + requirements("requirements-dev.txt"):
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None or not requirement.specifier.contains(pin[0], prereleases=True):
            stale.append(str(requirement))
    assert not stale, f"requirements-dev.lock is stale for {stale}: run `make lock`"
    assert all(count >= 1 for _, count in pins.values())


def test_versions_with_known_advisories_are_excluded_by_the_ranges_and_the_lock() -> None:
    pins = locked()
    ranges = {canonicalize_name(r.name): r.specifier for r in requirements("requirements.txt")}
    for name, minimum in SAFE_MINIMUM.items():
        assert pins[name][0] >= minimum
        older = Version(f"{minimum.major}.{minimum.minor}.{max(minimum.micro - 1, 0)}")
        assert not ranges[name].contains(older), f"{name} {ranges[name]} admits {older}"


def test_make_install_installs_the_lock_with_hashes_required() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements-dev.lock" in makefile
    assert re.search(r"^\$\(STAMP\): requirements-dev\.lock$", makefile, re.M)
