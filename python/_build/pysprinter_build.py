"""A PEP 517 build backend for this one pure-Python package, stdlib only.

Why not setuptools: a fresh `python3 -m venv` on Debian 12 holds
setuptools 66 but not `wheel`, which setuptools < 70.1 needs to build any
wheel; so `pip install ./python` with no index fails with "invalid command
'bdist_wheel'". This backend needs nothing: it zips pysprinter/ with the
METADATA, WHEEL and RECORD files PEP 427 asks for, so the install works
offline, with or without build isolation.
"""
import base64
import hashlib
import os
import pathlib
import tarfile
import zipfile

NAME = "pysprinter"
VERSION = "0.1.0"
ROOT = pathlib.Path(__file__).resolve().parent.parent
TAG = "py3-none-any"
METADATA = f"""Metadata-Version: 2.1
Name: {NAME}
Version: {VERSION}
Summary: Helpers for pysprinter function files and a client for pysprinterd
Requires-Python: >=3.9
License: MIT
"""
WHEEL = f"""Wheel-Version: 1.0
Generator: pysprinter_build
Root-Is-Purelib: true
Tag: {TAG}
"""


def _files():
    for p in sorted(list((ROOT / NAME).rglob("*.py")) + [ROOT / NAME / "py.typed"]):
        if "__pycache__" not in p.parts:
            yield p.relative_to(ROOT).as_posix(), p.read_bytes()


def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    d = pathlib.Path(metadata_directory) / f"{NAME}-{VERSION}.dist-info"
    d.mkdir(parents=True, exist_ok=True)
    (d / "METADATA").write_text(METADATA)
    (d / "WHEEL").write_text(WHEEL)
    return d.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-{TAG}.whl"
    info = f"{NAME}-{VERSION}.dist-info"
    entries = list(_files()) + [(f"{info}/METADATA", METADATA.encode()),
                                (f"{info}/WHEEL", WHEEL.encode())]
    record = "".join(f"{p},{_hash(d)},{len(d)}\n" for p, d in entries) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in entries:
            z.writestr(p, d)
        z.writestr(f"{info}/RECORD", record)
    return name


def build_sdist(sdist_directory, config_settings=None):
    base = f"{NAME}-{VERSION}"
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for rel in ["pyproject.toml", "_build/pysprinter_build.py"] + [p for p, _ in _files()]:
            t.add(ROOT / rel, arcname=f"{base}/{rel}")
        info = tarfile.TarInfo(f"{base}/PKG-INFO")
        data = METADATA.encode()
        info.size = len(data)
        import io
        t.addfile(info, io.BytesIO(data))
    return name
