"""How a job's floating-point numbers are made, and the fingerprint that says so.

Measured on the default experiment (closing note of issue 24): the same code, data and seed give other last digits
on another CPU kind, and gate learning on random weights amplifies them into other pruned widths. Each of ATen's
kernel capability (``ATEN_CPU_CAPABILITY``), oneDNN's ISA (``ONEDNN_MAX_CPU_ISA``, convolutions) and MKL's code
path (``MKL_CBWR``, matrix products) alone moves the figures; so does the thread count (parallel reductions split
their sums by thread).

Two modes (config key ``numerics.mode``):

- ``native``: torch as installed: the fastest kernels of this CPU. Runs repeat bit for bit on one machine kind.
- ``pinned``: only code whose arithmetic is the same on every x86-64 CPU with AVX2 (Intel and AMD, AVX2 and
  AVX-512): ATen's AVX2 kernels; MKL's single SSE2 code path under conditional numerical reproducibility
  (``COMPATIBLE,STRICT``: the only branch Intel documents as reproducible on non-Intel CPUs), with a fixed thread
  count; oneDNN switched off (its kernels and their blocking follow the CPU's ISA and cache sizes, with no
  cross-machine promise), so convolutions run through ATen's im2col + MKL path; the thread count fixed by the
  config, whatever cores a scheduler grants. On CUDA: deterministic algorithms where torch has them (see
  ``CUDA_NONDETERMINISTIC``), no TF32, cuDNN autotuning off; other GPU models still give other digits.

This module imports no torch at import time: ``apply`` must run before the first tensor operation of a process,
since ATen and MKL read their variables once, at their first use.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from pfs.core.errors import PfsError

MODES = ("native", "pinned")
MODE_ENV = "PFS_NUMERICS"  # the mode and thread count a job applied, for the processes it starts (torchrun's ranks)
THREADS_ENV = "PFS_NUMERICS_THREADS"
PINNED_CPU_CAPABILITY = "AVX2"
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels: the AVX2 build, on AVX-512 CPUs too
    "MKL_CBWR": "COMPATIBLE,STRICT",  # MKL's one SSE2 path: the same on Intel and AMD; STRICT: alignment-independent
    "MKL_DYNAMIC": "FALSE",  # MKL keeps the thread count it is given
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # cuBLAS reproducible run to run (torch's reproducibility notes)
}
# what torch 2.14 runs without a deterministic CUDA implementation among the ops pfs uses (torch's
# use_deterministic_algorithms docs): pinned mode warns once for them instead of failing
CUDA_NONDETERMINISTIC = {
    "adaptive_avg_pool2d backward": "ImageNet ResNet-50 / MobileNet heads: atomic adds; the order of the sums varies",
}
# oneDNN's CPU ISA ladder (highest first), read from /proc/cpuinfo's flags: what its kernels pick when not pinned
_ONEDNN_ISA = (
    ("avx512_core_amx", {"amx_tile", "amx_bf16", "amx_int8", "avx512f"}),
    ("avx512_core_fp16", {"avx512_fp16", "avx512f"}),
    ("avx512_core_bf16", {"avx512_bf16", "avx512f"}),
    ("avx512_core_vnni", {"avx512_vnni", "avx512f"}),
    ("avx512_core", {"avx512f", "avx512bw", "avx512vl", "avx512dq"}),
    ("avx2_vnni", {"avx_vnni", "avx2"}),
    ("avx2", {"avx2"}),
)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise PfsError(f"numerics.mode {mode!r} unknown; use one of {', '.join(MODES)}")
    return mode


def apply(mode: str, threads: int) -> None:
    """Set this process's numerics: ``mode`` (native or pinned) and ``threads`` intra-op threads. Call before the
    first tensor operation; a pinned mode that did not take (torch already ran an op, or no AVX2) raises PfsError."""
    check_mode(mode)
    threads = max(1, int(threads))
    if mode == "pinned":
        os.environ.update(PINNED_ENV)
    os.environ[MODE_ENV], os.environ[THREADS_ENV] = mode, str(threads)
    import torch

    capability = torch.backends.cpu.get_cpu_capability()  # ATen fixes it at its first use, reading the variable
    if mode == "pinned" and capability != PINNED_CPU_CAPABILITY:
        why = ("this CPU has no AVX2" if "avx2" not in cpu_flags() and platform.machine() == "x86_64" else
               f"torch ran an operation before pfs.core.numerics.apply, so its kernels stay {capability}")
        raise PfsError(f"numerics.mode pinned needs ATen's AVX2 kernels, but {why}; set numerics.mode: native "
                       "(results then match only runs on the same CPU kind)")
    torch.set_num_threads(threads)
    if mode == "pinned":
        torch.backends.mkldnn.enabled = False
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def apply_from_env() -> None:
    """Apply the mode a parent job recorded in the environment (torchrun's ranks); native with torch's default
    threads when none was."""
    if MODE_ENV in os.environ:
        apply(os.environ[MODE_ENV], int(os.environ.get(THREADS_ENV, "1")))


def current_mode() -> str:
    return os.environ.get(MODE_ENV, "native")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else set()


def _cpu_model() -> tuple[str, str]:
    """(vendor, model name) from /proc/cpuinfo; the platform's processor string elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", platform.processor()
    field = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()[:30])}
    return field.get("vendor_id", ""), field.get("model name", "")


def onednn_isa(flags: set[str], max_isa: str | None = None) -> str:
    """The ISA oneDNN's kernels use on a CPU with ``flags``, capped by ``max_isa`` (ONEDNN_MAX_CPU_ISA's value)."""
    names = [name for name, _ in _ONEDNN_ISA]
    cap = names.index(max_isa.lower()) if max_isa and max_isa.lower() in names else 0
    return next((name for name, need in _ONEDNN_ISA[cap:] if need <= flags), "sse41" if flags else "")


def _library_versions() -> dict[str, str]:
    import torch

    shown = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version (\S+)", shown)
    dnnl = re.search(r"MKL-DNN v(\S+)", shown)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": str(torch.__version__),  # a TorchVersion: torch.load(weights_only=True) refuses that class
            "mkl": mkl.group(1) if mkl else "", "onednn": dnnl.group(1) if dnnl else "",
            "cuda": torch.version.cuda or "", "cudnn": str(cudnn or "")}


def fingerprint(device: str = "cpu") -> dict[str, str | int | bool]:
    """What produced this process's numbers: mode, threads, CPU (ATen capability, oneDNN ISA, vendor and model) or
    GPU (name, compute capability), library versions; ``key`` is what two runs must share to agree bit for bit."""
    import torch

    mode = current_mode()
    vendor, model = _cpu_model()
    flags = cpu_flags()
    fp = {"mode": mode, "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
          "onednn_isa": onednn_isa(flags, os.environ.get("ONEDNN_MAX_CPU_ISA")),
          "onednn_enabled": bool(torch.backends.mkldnn.enabled),
          # MKL's code path: pinned by CNR, capped by MKL_ENABLE_INSTRUCTIONS, else MKL's own choice for this CPU
          "mkl_path": os.environ.get("MKL_CBWR") or os.environ.get("MKL_ENABLE_INSTRUCTIONS", "auto"),
          "cpu_vendor": vendor, "cpu_model": model, "gpu": "", "compute_capability": "", **_library_versions()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        fp["gpu"] = torch.cuda.get_device_name(index)
        fp["compute_capability"] = "{}.{}".format(*torch.cuda.get_device_capability(index))
    fp["key"] = fingerprint_key(fp)
    return fp


def fingerprint_key(fp: dict) -> str:
    """The part of a fingerprint two runs must share to agree bit for bit: pinned CPU runs only the mode, threads
    and torch build; native CPU runs also the kernels' CPU (ATen capability, oneDNN ISA, vendor); GPU runs the GPU."""
    if fp.get("gpu"):
        where = f"cuda {fp['gpu']} sm{fp['compute_capability']}"
    elif fp.get("mode") == "pinned":
        where = f"cpu {str(fp['cpu_capability']).lower()}"
    else:
        where = (f"cpu {str(fp['cpu_capability']).lower()} onednn {fp['onednn_isa']} mkl {fp.get('mkl_path', 'auto')}"
                 f" {fp['cpu_vendor']}")
    return f"{fp.get('mode')} {where} threads {fp.get('threads')} torch {fp.get('torch')}"


def rule_params(config: dict) -> dict:
    """The numerics param of the rules that compute (torch-free, for the Snakefile): the mode, and in pinned mode the
    thread count (resources.threads), which splits parallel sums and so is part of the result."""
    mode = check_mode(config.get("numerics", {}).get("mode", "native"))
    return {"mode": mode, "threads": int(config["resources"]["threads"])} if mode == "pinned" else {"mode": mode}
