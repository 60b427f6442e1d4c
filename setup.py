"""Install yolov12-kernels (ops package ``yolov12_kernels`` and model package ``yolov12``).

The CUDA extension is optional: it is built ahead of time only where a CUDA-enabled torch and nvcc
are present (see ``cuda_extensions``); everywhere else the package installs without it and the
Triton / PyTorch backends are used. Install with ``--no-build-isolation`` so that this script sees
the torch that is already installed instead of pulling a new one into a build environment.
"""
import os

from setuptools import find_packages, setup


def cuda_extensions():
    """(ext_modules, cmdclass) for the AOT CUDA build, or ([], {}) where it cannot be built."""
    return [], {}


ext_modules, cmdclass = cuda_extensions()

setup(
    name="yolov12-kernels",
    version="0.1.0",
    description="Fast area-attention kernels and a weight-compatible YOLOv12 model",
    long_description=open(os.path.join(os.path.dirname(__file__), "README.md")).read(),
    long_description_content_type="text/markdown",
    # benchmarks/ ships too: the bench CLI uses its timing and record helpers.
    packages=find_packages(include=["yolov12_kernels", "yolov12_kernels.*",
                                    "yolov12", "yolov12.*", "benchmarks"]),
    package_data={"yolov12_kernels": ["csrc/*"]},
    python_requires=">=3.10",
    # torch is deliberately unpinned: a torch that is already installed (CPU or CUDA) is kept.
    install_requires=["torch>=2.4", "numpy", "tqdm"],
    extras_require={
        "triton": ["triton>=3.0"],
        "test": ["pytest", "pytest-benchmark", "Pillow", "safetensors", "pycocotools", "onnx",
                 "onnxruntime", "onnxscript", "matplotlib"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={"console_scripts": ["yolov12=yolov12.__main__:main"]},
)
