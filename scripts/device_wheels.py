"""Build, on this (CPU) machine, what the GPU pack carries to the device machine, which has no package registry.

    python scripts/device_wheels.py            # or scripts/device_wheels.sh: .whl-a/, .whl-b/, .device-data/

- ``.whl-a/``: the wheels that ``scripts/device_pack.sh`` needs beyond the device image (``device_image_packages.txt``):
  ase, sevenn, chgnet, platformdirs and every requirement of theirs the image lacks, for CPython 3.12 on x86-64
  Linux, one version each (the version installed here where there is one, so CPU and GPU results share versions).
- ``.whl-b/``: cuEquivariance for the image's CUDA 13, in the versions sevenn's ``cueq13`` extra asks for.
- ``.device-data/``: the reference data the batched-speed part reads (molecules suite and GoldDAC), as one
  gzipped tar checked against the task files' sha256; the device copy of the tree does not include ``../shared``.

Each device call carries the working tree plus its paths, at most 64 MiB in all: ``.whl-a`` and ``.device-data``
travel with the first call, ``.whl-b`` with the second (``scripts/device_pack.sh`` says how). The script
refuses, naming the sizes, when a call would not fit.

To fit, three wheels are trimmed of files nothing here uses (the same version, RECORD rewritten): sevenn's older
SevenNet-0 checkpoint (22May2024; the 7net-0 card uses 11Jul2024), chgnet's 0.2.0 and r2SCAN checkpoints (the
pack runs CHGNet 0.3.0), and nvidia-ml-py3's old ``pynvml.py``, which would shadow the image's nvidia-ml-py.
plotly, a requirement of pymatgen-core for plotting only, is left out (9.7 MB): ``--probe`` checks that
nothing the pack runs imports it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
CALL_LIMIT = 64 * MIB  # the working tree plus carried paths of one device call
MARGIN = 2 * MIB  # room for the tree to grow a little between building the packs and the GPU window
IMAGE_FILE = Path(__file__).with_name("device_image_packages.txt")
DEVICE_PYTHON = "3.12"
#: the sevenn extra that matches the image's CUDA (torch 2.11.0+cu130)
CUEQ_EXTRA = "cueq13"
MAIN_ROOTS = ["ase", "sevenn", "chgnet", "platformdirs"]
#: requirements deliberately not carried, with the reason (checked by ``probe_skipped_imports``)
SKIP = {"plotly": "pymatgen-core plotting only; not imported by anything the pack runs"}
#: files removed from a wheel: (package, path prefix inside the wheel, reason)
TRIM = [
    ("sevenn", "sevenn/pretrained_potentials/SevenNet_0__22May2024/",
     "older SevenNet-0; the 7net-0 card uses 11Jul2024"),
    ("chgnet", "chgnet/pretrained/0.2.0/", "CHGNet 0.2.0; the chgnet card uses 0.3.0"),
    ("chgnet", "chgnet/pretrained/r2scan/", "chgnet-r2scan is not in the GPU pack"),
    ("nvidia-ml-py3", "pynvml.py", "old pynvml would shadow the image's nvidia-ml-py"),
]
#: what pip matches on for the device: CPython 3.12, glibc up to 2.39 (Ubuntu 24.04), x86-64
PLATFORMS = ["manylinux2014_x86_64", "manylinux1_x86_64",
             *[f"manylinux_2_{n}_x86_64" for n in range(17, 40)]]
MARKER_ENV = {"python_version": DEVICE_PYTHON, "python_full_version": "3.12.3", "platform_system": "Linux",
              "sys_platform": "linux", "platform_machine": "x86_64", "implementation_name": "cpython",
              "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}


class PackError(RuntimeError):
    """Something the packs cannot be built with; the message says what and how to fix it."""


@dataclass
class Wheel:
    name: str
    version: str
    path: Path  # the file in the pack
    required_by: str
    trimmed: list[str] = field(default_factory=list)
    why_trimmed: list[str] = field(default_factory=list)

    def record(self) -> dict:
        return {"file": self.path.name, "name": self.name, "version": self.version, "bytes": self.path.stat().st_size,
                "sha256": hashlib.sha256(self.path.read_bytes()).hexdigest(), "required_by": self.required_by,
                "trimmed": self.trimmed, "why_trimmed": self.why_trimmed}


def image_packages(path: Path = IMAGE_FILE) -> dict[str, str | None]:
    """The device image's packages: canonical name -> version (None where the notes give none)."""
    packages = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, *version = line.split()
            packages[canonicalize_name(name)] = version[0] if version else None
    return packages


def fits_device(filename: str) -> bool:
    """Whether a wheel installs on CPython 3.12, x86-64 Linux (glibc <= 2.39)."""
    _, _, _, tags = parse_wheel_filename(filename)
    for tag in tags:
        abi3 = tag.abi == "abi3" and tag.interpreter.startswith("cp3")
        interpreter_ok = tag.interpreter in ("py3", "cp312") or abi3
        platform_ok = tag.platform == "any" or tag.platform in PLATFORMS
        if interpreter_ok and tag.abi in ("none", "cp312", "abi3") and platform_ok:
            return True
    return False


def requirements_of(wheel: Path, extra: str = "") -> list[Requirement]:
    """Requires-Dist of a wheel that apply on the device (markers evaluated for CPython 3.12 on Linux)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(name).decode().splitlines()
    found = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = Requirement(line.split(":", 1)[1].strip())
        marker = requirement.marker
        if extra and (marker is None or "extra" not in str(marker)):
            continue  # asked for an extra: only its own requirements
        if marker is None or marker.evaluate({**MARKER_ENV, "extra": extra}):
            found.append(requirement)
    return found


def trim_wheel(source: Path, target: Path, prefixes: list[str]) -> list[str]:
    """Copy ``source`` to ``target`` without the members under ``prefixes``; RECORD loses their lines.
    Returns the removed members."""
    removed = []
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if any(info.filename.startswith(p) for p in prefixes):
                removed.append(info.filename)
                continue
            data = old.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                kept = [line for line in data.decode().splitlines()
                        if not any(line.startswith(p) for p in prefixes)]
                data = ("\n".join(kept) + "\n").encode()
            new.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    if len(removed) == 0:
        raise PackError(f"{source.name}: nothing matched {prefixes}; the wheel changed, update TRIM in {__file__}")
    return removed


class Resolver:
    """Walks requirements from the roots, fetching into ``cache`` every package that neither the image nor an
    earlier pack provides."""

    def __init__(self, cache: Path, image: dict[str, str | None], provided: dict[str, str] | None = None):
        self.cache, self.image = cache, image
        self.provided = dict(provided or {})  # canonical name -> version, from earlier packs
        self.assumed: list[str] = []  # requirements taken as met by image packages of unknown version
        self.skipped: dict[str, str] = {}

    def resolve(self, roots: list[Requirement], root_label: str) -> list[tuple[str, str, Path, str]]:
        chosen: dict[str, tuple[str, Path, str]] = {}
        queue = [(r, root_label) for r in roots]
        while queue:
            requirement, parent = queue.pop(0)
            name = canonicalize_name(requirement.name)
            if name in chosen or name in self.provided:
                version = chosen[name][0] if name in chosen else self.provided[name]
                if not requirement.specifier.contains(version, prereleases=True):
                    raise PackError(f"{parent} needs {requirement}, but the packs hold {name} {version}")
                continue
            if name in self.image:
                self._check_image(name, requirement, parent)
                continue
            if name in SKIP:
                self.skipped[name] = f"{SKIP[name]} (required by {parent})"
                continue
            wheel = self.fetch(requirement)
            version = str(parse_wheel_filename(wheel.name)[1])
            chosen[name] = (version, wheel, parent)
            queue += [(r, f"{name} {version}") for r in requirements_of(wheel)]
        self.provided.update({name: version for name, (version, _, _) in chosen.items()})
        return [(name, version, wheel, parent) for name, (version, wheel, parent) in chosen.items()]

    def _check_image(self, name: str, requirement: Requirement, parent: str) -> None:
        version = self.image[name]
        if version is None:
            if requirement.specifier:
                self.assumed.append(f"{requirement} (for {parent})")
        elif not requirement.specifier.contains(version, prereleases=True):
            raise PackError(f"{parent} needs {requirement}, but the device image has {name} {version}; "
                            "carrying a second version is not supported (pip would keep one)")

    def fetch(self, requirement: Requirement) -> Path:
        """The wheel for ``requirement``: the version installed here when it fits, else the newest pip finds."""
        name = canonicalize_name(requirement.name)
        try:
            local = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            local = None
        spec = f"{requirement.name}=={local}" if local and requirement.specifier.contains(local, True) \
            else f"{requirement.name}{requirement.specifier}"
        cached = self._cached(name, Requirement(spec))
        if cached is None or "==" not in spec:
            self._pip(spec)
            cached = self._cached(name, Requirement(spec))
        if cached is None:
            raise PackError(f"pip fetched no wheel for {spec} that installs on CPython {DEVICE_PYTHON} x86-64 Linux")
        return cached

    def _cached(self, name: str, requirement: Requirement) -> Path | None:
        best: tuple[Version, Path] | None = None
        for path in self.cache.glob("*.whl"):
            wheel_name, version, _, _ = parse_wheel_filename(path.name)
            if wheel_name == name and requirement.specifier.contains(version, True) and fits_device(path.name):
                if best is None or version > best[0]:
                    best = (version, path)
        return best[1] if best else None

    def _pip(self, spec: str) -> None:
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", DEVICE_PYTHON, "--implementation", "cp", *platforms, "-d", str(self.cache),
                    spec]
        result = subprocess.run(download, capture_output=True, text=True)
        if result.returncode == 0:
            return
        # no wheel on the index (an sdist only): build one here, which must be pure Python to install there
        build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(self.cache), spec]
        built = subprocess.run(build, capture_output=True, text=True)
        if built.returncode != 0:
            raise PackError(f"pip could neither download a wheel nor build one for {spec}:\n"
                            f"{_tail(result.stderr)}\n{_tail(built.stderr)}")


def _tail(text: str, lines: int = 5) -> str:
    kept = [line for line in text.splitlines() if "is ignored: it is neither a file nor a directory" not in line]
    return "\n".join(kept[-lines:])


def write_pack(folder: Path, resolved: list[tuple[str, str, Path, str]]) -> list[Wheel]:
    """Put the wheels (trimmed where TRIM says) into a fresh ``folder``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    wheels = []
    for name, version, source, parent in sorted(resolved):
        target = folder / source.name
        rules = [(prefix, why) for package, prefix, why in TRIM if canonicalize_name(package) == name]
        trimmed = trim_wheel(source, target, [prefix for prefix, _ in rules]) if rules else []
        if not rules:
            shutil.copy2(source, target)
        wheels.append(Wheel(name, version, target, parent, trimmed, [why for _, why in rules]))
    return wheels


def tree_bytes(repo: Path = REPO) -> int:
    """What every device call sends besides its carried paths: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / os.fsdecode(p)).lstat().st_size for p in listed if p and (repo / os.fsdecode(p)).exists())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def data_tasks() -> list[str]:
    """The tasks whose data the batched-speed part of the pack reads: the molecules suite and GoldDAC."""
    from omni_bench.task_registry import suites

    return [*suites()["molecules"], "golddac"]


def write_data_pack(folder: Path, data_root: Path, tasks: list[str] | None = None) -> dict:
    """``folder/reference-data.tar.gz`` with every data file of ``tasks``, each checked against its task's
    sha256 first, and ``folder/manifest.json``."""
    from omni_bench import data
    from omni_bench.task_registry import all_tasks

    files: dict[str, Path] = {}
    for name in tasks or data_tasks():
        files.update(data.task_files(all_tasks()[name], data_root, "device data pack"))
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    archive = folder / "reference-data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for relative, path in sorted(files.items()):
            tar.add(path, arcname=relative)
    manifest = {"archive": archive.name, "tasks": tasks or data_tasks(), "bytes": archive.stat().st_size,
                "files": {relative: data.sha256_file(path) for relative, path in sorted(files.items())}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def probe_skipped_imports(python: str = sys.executable) -> list[str]:
    """Import what the pack runs, compute one CHGNet and one SevenNet energy, and return the skipped packages'
    modules that got imported (none may be)."""
    code = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        "from ase.build import bulk\n"
        "from omni_bench.models.registry import resolve_models\n"
        "from omni_bench.models.loaded import LoadedModel\n"
        "import omni_bench_reference.train, omni_bench.cli\n"
        "for name in ('chgnet', '7net-0'):\n"
        "    (variant,) = resolve_models([name])\n"
        "    model = LoadedModel(variant, 'cpu')\n"
        "    model.prefetch([bulk('Si')], 128); model.energy(bulk('Si')); model.energy(bulk('Si', cubic=True))\n"
        f"print('IMPORTED:', *(m for m in sys.modules if m.split('.')[0] in {sorted(SKIP)!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    if result.returncode != 0:
        raise PackError(f"import probe failed:\n{_tail(result.stderr, 15)}")
    return next(line for line in result.stdout.splitlines() if line.startswith("IMPORTED:")).split()[1:]


def cueq_roots(sevenn_wheel: Path) -> list[Requirement]:
    """cuEquivariance packages and versions as sevenn's extra for the image's CUDA names them."""
    roots = [Requirement(str(r).split(";")[0]) for r in requirements_of(sevenn_wheel, extra=CUEQ_EXTRA)]
    if not roots:
        raise PackError(f"{sevenn_wheel.name} has no extra {CUEQ_EXTRA!r}: pick the cuEquivariance versions by hand")
    return roots


def check_call(label: str, paths: list[Path], tree: int) -> int:
    total = tree + sum(folder_bytes(p) for p in paths)
    if total > CALL_LIMIT - MARGIN:
        sizes = ", ".join(f"{p.name} {folder_bytes(p) / MIB:.1f} MiB" for p in paths)
        raise PackError(f"{label}: tree {tree / MIB:.1f} MiB + {sizes} = {total / MIB:.1f} MiB, over the "
                        f"{(CALL_LIMIT - MARGIN) / MIB:.0f} MiB a device call may carry (64 MiB less a margin): "
                        "trim or split the pack")
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "omni-bench" / "device-wheels",
                        help="where downloaded wheels are kept between runs (default: %(default)s)")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("OMNI_BENCH_DATA", REPO.parent / "shared"
                                                                              / "data")),
                        help="reference data root (default: $OMNI_BENCH_DATA, else ../shared/data)")
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout the device calls send (default: this one)")
    parser.add_argument("--no-probe", action="store_true", help="skip the check that skipped packages are not imported")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    try:
        image = image_packages()
        resolver = Resolver(args.cache, image)
        main_pack = write_pack(args.repo / ".whl-a", resolver.resolve([Requirement(r) for r in MAIN_ROOTS], "pack a"))
        data = write_data_pack(args.repo / ".device-data", args.data_root)
        sevenn = next(w for w in main_pack if w.name == "sevenn")
        cueq_pack = write_pack(args.repo / ".whl-b", resolver.resolve(cueq_roots(sevenn.path), f"sevenn[{CUEQ_EXTRA}]"))
        for folder, wheels in ((args.repo / ".whl-a", main_pack), (args.repo / ".whl-b", cueq_pack)):
            (folder / "manifest.json").write_text(json.dumps(
                {"pack": folder.name, "python": DEVICE_PYTHON, "wheels": [w.record() for w in wheels],
                 "skipped": resolver.skipped, "assumed_from_image": resolver.assumed}, indent=2) + "\n")
        tree = tree_bytes(args.repo)
        first = check_call("device call 1 (.whl-a, .device-data)", [args.repo / ".whl-a", args.repo / ".device-data"],
                           tree)
        second = check_call("device call 2 (.whl-b)", [args.repo / ".whl-b"], tree)
        imported = [] if args.no_probe else probe_skipped_imports()
        if imported:
            raise PackError(f"modules of packages left out of the packs were imported: {imported}; carry them")
    except (PackError, subprocess.CalledProcessError) as exc:
        print(f"device_wheels: {exc}", file=sys.stderr)
        return 1
    for folder, wheels in ((".whl-a", main_pack), (".whl-b", cueq_pack)):
        print(f"{folder}: {len(wheels)} wheels, {folder_bytes(args.repo / folder) / MIB:.1f} MiB")
        for wheel in wheels:
            note = f" (trimmed {len(wheel.trimmed)} files)" if wheel.trimmed else ""
            print(f"  {wheel.path.name}  {wheel.path.stat().st_size / MIB:.2f} MiB{note}")
    print(f".device-data: {data['bytes'] / MIB:.1f} MiB, {len(data['files'])} files of {', '.join(data['tasks'])}")
    print(f"working tree {tree / MIB:.1f} MiB; call 1 carries {first / MIB:.1f} MiB, call 2 {second / MIB:.1f} MiB "
          f"(limit 64 MiB)")
    print("left out: " + "; ".join(f"{k}: {v}" for k, v in resolver.skipped.items()))
    if resolver.assumed:
        print("assumed met by the image (version not in the device notes): " + "; ".join(resolver.assumed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
