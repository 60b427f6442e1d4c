"""Packaging: an offline editable install (``pip install --no-build-isolation --no-deps -e .`` with
no package index and no network) of a clean copy of the repository succeeds, and the installed
packages import from that copy.

Without pyproject.toml pip falls back to ``setup.py develop``, which re-runs pip *with* build
isolation and tries to download setuptools: that is how the AOT build failed on an offline GPU
machine. The install goes into a throwaway venv that sees this interpreter's site-packages through
a .pth file (torch, setuptools and pip are reused, nothing is reinstalled or downloaded, and the
environment running the tests is not touched).
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import site
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# what a fresh clone does not have (and what would make the copy large or stale)
NOT_COPIED = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", "*.so",
                                    ".pytest_cache", ".benchmarks", "results", ".whl", ".gl",
                                    ".triton36*")
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_ROOT_USER_ACTION": "ignore",
           # any download that PIP_NO_INDEX does not stop fails at once on a dead proxy
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "NO_PROXY": "", "no_proxy": ""}


def _site_dirs() -> list[str]:
    """This interpreter's package directories (not the repository, not tests/)."""
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    dirs += [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def _throwaway_venv(path: Path) -> Path:
    """A venv without pip of its own whose sys.path also holds this interpreter's site dirs."""
    venv.create(path, with_pip=False, symlinks=os.name != "nt")
    python = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True,
                             env=_clean_env()).stdout.strip()
    Path(purelib, "_parent_site.pth").write_text("\n".join(_site_dirs()) + "\n")
    return python


def _installed(dist: str) -> bool:
    """Whether ``dist`` is installed, by its metadata. Not importlib.util.find_spec("pip"):
    setuptools' distutils shim takes a look-up of "pip" for pip running a build and switches itself
    off, and a later ``import setuptools`` in this process (torch.utils.cpp_extension) then fails."""
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _clean_env(**extra) -> dict:
    """os.environ without what would let the original checkout or another index leak in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON")) and k not in ("VIRTUAL_ENV",)}
    env.update(extra)
    return env


@pytest.mark.slow
@pytest.mark.skipif(not _installed("pip"), reason="pip is not installed")
@pytest.mark.skipif(not _installed("setuptools"),
                    reason="setuptools is not installed (scripts/setup.sh installs it)")
def test_offline_editable_install_of_a_clean_copy(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED)
    python = _throwaway_venv(tmp_path / "venv")
    work = tmp_path / "elsewhere"  # not the repository: imports must come from the install
    work.mkdir()
    env = _clean_env(**OFFLINE)
    if torch.version.cuda is not None:
        # the AOT CUDA build takes minutes; it is `python -m benchmarks.gpu_check`'s aot step
        env["YOLOV12_NO_CUDA_BUILD"] = "1"
    try:
        proc = subprocess.run([python, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
                               "-e", str(copy)], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert "setup.py develop" not in proc.stdout, "legacy develop path: pyproject.toml ignored?"
        probe = ("import importlib.metadata as md, yolov12, yolov12.bench, yolov12_kernels\n"
                 "print(md.version('yolov12-kernels'), yolov12_kernels.__version__)\n"
                 "for m in (yolov12_kernels, yolov12, yolov12.bench): print(m.__file__)\n")
        proc = subprocess.run([python, "-c", probe], cwd=work, env=_clean_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        installed, package, *files = proc.stdout.split()
        assert installed == package, (installed, package)
        for f in files:
            assert Path(f).resolve().is_relative_to(copy.resolve()), f"{f} is not from the copy"
        assert (python.parent / "yolov12").exists(), "console script not installed"
    finally:
        shutil.rmtree(tmp_path / "venv", ignore_errors=True)
        shutil.rmtree(copy, ignore_errors=True)
