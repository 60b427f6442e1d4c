"""Install yolov12-kernels (ops package ``yolov12_kernels`` and model package ``yolov12``).

The CUDA extension is optional: it is built ahead of time only where a CUDA-enabled torch and nvcc
are present (see ``cuda_extensions``); everywhere else the package installs without it and the
Triton / PyTorch backends are used. Install with ``--no-build-isolation`` so that this script sees
the torch that is already installed instead of pulling a new one into a build environment.
"""
import os

from setuptools import find_packages, setup


def _cuda_build_helpers():
    """yolov12_kernels/_cuda_build.py loaded by path: the arch-flag parser, without importing the
    package (whose __init__ imports torch and the ops)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "yolov12_kernels",
                        "_cuda_build.py")
    spec = importlib.util.spec_from_file_location("_yolov12_cuda_build", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cuda_extensions():
    """(ext_modules, cmdclass) for the AOT CUDA build, or ([], {}) where it cannot be built.

    Built when a CUDA-enabled torch and nvcc are present, unless ``YOLOV12_NO_CUDA_BUILD=1``.
    ``YOLOV12_CUDA_ARCHS`` picks the targets (default "7.5;8.0;8.6;8.9;9.0"; "X.Y+PTX" adds PTX,
    "compute_75" is PTX only), ``MAX_JOBS`` the parallel compile jobs (ninja) and
    ``YOLOV12_NVCC_THREADS`` nvcc's per-file threads over the arch list. See docs/cuda.md.
    """
    def skip(why):
        print(f"yolov12-kernels: not building the CUDA extension ({why}); "
              "the Triton / PyTorch backends will be used")
        return [], {}

    if os.environ.get("YOLOV12_NO_CUDA_BUILD", "0").strip() not in ("", "0"):
        return skip("YOLOV12_NO_CUDA_BUILD is set")
    try:
        import torch
        from torch.utils.cpp_extension import (CUDA_HOME, BuildExtension, CUDAExtension,
                                               is_ninja_available)
    except ImportError as e:
        return skip(f"torch is not importable at build time: {e}; install with "
                    "--no-build-isolation")
    if torch.version.cuda is None:
        return skip(f"torch {torch.__version__} has no CUDA")
    if CUDA_HOME is None:
        return skip("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    helpers = _cuda_build_helpers()
    archs = os.environ.get(helpers.ENV_ARCHS) or helpers.DEFAULT_ARCHS
    threads = os.environ.get("YOLOV12_NVCC_THREADS", "2")
    sources = ["csrc/" + helpers.BINDING_SOURCE] + ["csrc/" + s for s in helpers.KERNEL_SOURCES]
    ext = CUDAExtension(
        "yolov12_kernels._C",
        sources=sources,
        include_dirs=[os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")],
        extra_compile_args={
            "cxx": ["-O3"],
            # explicit -gencode flags: torch then adds no arch flags of its own
            "nvcc": helpers.nvcc_common_flags() + helpers.gencode_flags(archs)
            + ["--threads", threads],
        },
    )
    print(f"yolov12-kernels: building the CUDA extension for {archs}")
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=is_ninja_available())}


ext_modules, cmdclass = cuda_extensions()

setup(
    name="yolov12-kernels",
    version="0.1.0",
    description="Fast area-attention kernels and a weight-compatible YOLOv12 model",
    long_description=open(os.path.join(os.path.dirname(__file__), "README.md")).read(),
    long_description_content_type="text/markdown",
    # benchmarks/ holds scripts run from a checkout, not a package: the bench CLI's code is
    # yolov12.bench
    packages=find_packages(include=["yolov12_kernels", "yolov12_kernels.*",
                                    "yolov12", "yolov12.*"]),
    # tuned launch configurations (yolov12_kernels/triton/configs/<arch>.json, when there are any)
    package_data={"yolov12_kernels.triton": ["configs/*.json"]},
    python_requires=">=3.10",
    # torch is deliberately unpinned: a torch that is already installed (CPU or CUDA) is kept.
    install_requires=["torch>=2.4", "numpy", "tqdm"],
    # what each command needs beyond the model: predict reads and draws pictures with Pillow
    # (labels in a scalable font from Pillow 10.1, a bitmap one before), val also scores with
    # pycocotools, videos go through PyAV (FFmpeg): `pip install 'yolov12-kernels[predict,video]'`
    extras_require={
        "triton": ["triton>=3.0"],
        "predict": ["Pillow"],
        "val": ["Pillow", "pycocotools", "pyyaml"],  # pyyaml: dataset YAMLs in full
        "video": ["Pillow", "av"],
        # pytest-xdist / pytest-timeout: `pytest -n N --timeout S` (the GPU check uses both)
        "test": ["pytest", "pytest-benchmark", "pytest-xdist", "pytest-timeout", "Pillow",
                 "safetensors", "pycocotools", "onnx", "onnxruntime", "onnxscript", "matplotlib",
                 "av", "pyyaml"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={"console_scripts": ["yolov12=yolov12.__main__:main"]},
)
