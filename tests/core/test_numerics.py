"""pfs.core.numerics: the pinned mode gives bit-identical numbers whatever this CPU's kernels would be (the variables
that make an AVX-512 machine compute like an AVX2 one, or like no SIMD at all, change nothing), native mode does
not; the fingerprint says what produced a number, and its key tells comparable runs apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pfs.core import numerics
from pfs.core.errors import PfsError

# one training step of the default experiment's network, in a fresh process (the mode must come before torch's
# first operation): the loss and a hash of every gradient, printed as JSON
STEP = r"""
import hashlib, json, sys
from pfs.core import numerics
numerics.apply(sys.argv[1], 2)
import torch
from pfs.models import build_model
torch.manual_seed(0)
model = build_model("resnet20", num_classes=10)
x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
loss = torch.nn.functional.cross_entropy(model(x), y)
loss.backward()
digest = hashlib.sha256(b"".join(p.grad.numpy().tobytes() for p in model.parameters())).hexdigest()
print(json.dumps({"loss": loss.item(), "grads": digest, "fingerprint": numerics.fingerprint()}))
"""
# what makes this machine's kernels those of another CPU kind: ATen's capability, oneDNN's ISA, MKL's code path
OTHER_KINDS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "no simd": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"},
}
has_avx2 = pytest.mark.skipif("avx2" not in numerics.cpu_flags(), reason="pinned mode needs an x86-64 CPU with AVX2")


def step(mode: str, env: dict[str, str] | None = None) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in {*numerics.PINNED_ENV, "ONEDNN_MAX_CPU_ISA",
                                                                "MKL_ENABLE_INSTRUCTIONS", numerics.MODE_ENV}}
    out = subprocess.run([sys.executable, "-c", STEP, mode], env={**clean, **(env or {})}, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@has_avx2
def test_pinned_mode_gives_the_same_bits_whatever_kernels_this_cpu_would_pick():
    runs = {name: step("pinned", env) for name, env in {"this cpu": {}, **OTHER_KINDS}.items()}
    assert len({(r["loss"], r["grads"]) for r in runs.values()}) == 1, runs
    assert {r["fingerprint"]["key"] for r in runs.values()} == {runs["this cpu"]["fingerprint"]["key"]}
    fp = runs["this cpu"]["fingerprint"]
    assert fp["mode"] == "pinned" and fp["cpu_capability"] == "AVX2" and fp["onednn_enabled"] is False
    assert fp["key"].startswith("pinned cpu avx2 threads 2 torch ")


def test_native_mode_moves_with_the_kernels_and_its_key_says_so():
    native = step("native")
    scalar = step("native", OTHER_KINDS["no simd"])
    assert (native["loss"], native["grads"]) != (scalar["loss"], scalar["grads"])  # the drift pinned mode removes
    assert native["fingerprint"]["key"] != scalar["fingerprint"]["key"]
    assert scalar["fingerprint"]["cpu_capability"] == "DEFAULT" and "cpu default" in scalar["fingerprint"]["key"]


def test_pinned_mode_after_a_torch_operation_is_refused_in_one_line(monkeypatch):
    import torch

    monkeypatch.setattr(os, "environ", dict(os.environ))  # apply writes its variables: keep them in this test
    torch.ones(2).sum()  # ATen has picked its kernels
    if torch.backends.cpu.get_cpu_capability() == numerics.PINNED_CPU_CAPABILITY:
        pytest.skip("this CPU's own kernels are AVX2: nothing to refuse")
    threads = torch.get_num_threads()
    with pytest.raises(PfsError, match="before pfs.core.numerics.apply") as caught:
        numerics.apply("pinned", 2)
    assert "\n" not in str(caught.value) and "numerics.mode: native" in str(caught.value)
    assert torch.get_num_threads() == threads and torch.backends.mkldnn.enabled  # nothing changed


def test_unknown_mode_is_named_with_the_choices():
    with pytest.raises(PfsError, match="numerics.mode 'fast' unknown; use one of native, pinned"):
        numerics.check_mode("fast")


def test_rule_params_carry_the_threads_only_in_pinned_mode():
    config = {"resources": {"threads": 3}}
    assert numerics.rule_params({**config, "numerics": {"mode": "native"}}) == {"mode": "native"}
    assert numerics.rule_params({**config, "numerics": {"mode": "pinned"}}) == {"mode": "pinned", "threads": 3}
    assert numerics.rule_params(config) == {"mode": "native"}


def test_fingerprint_key_of_pinned_cpu_runs_ignores_the_cpu_and_of_gpu_runs_names_the_gpu():
    base = {"mode": "pinned", "threads": 2, "cpu_capability": "AVX2", "torch": "2.14.1", "gpu": ""}
    intel = {**base, "onednn_isa": "avx512_core_amx", "cpu_vendor": "GenuineIntel"}
    amd = {**base, "onednn_isa": "avx2", "cpu_vendor": "AuthenticAMD"}
    assert numerics.fingerprint_key(intel) == numerics.fingerprint_key(amd) == "pinned cpu avx2 threads 2 torch 2.14.1"
    assert numerics.fingerprint_key({**intel, "mode": "native"}) != numerics.fingerprint_key({**amd, "mode": "native"})
    assert numerics.fingerprint_key({**intel, "mode": "native", "mkl_path": "AVX2"}) == (
        "native cpu avx2 onednn avx512_core_amx mkl AVX2 GenuineIntel threads 2 torch 2.14.1")
    gpu = numerics.fingerprint_key({**intel, "gpu": "NVIDIA H100", "compute_capability": "9.0"})
    assert gpu == "pinned cuda NVIDIA H100 sm9.0 threads 2 torch 2.14.1"


AVX512 = {"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"}


@pytest.mark.parametrize(("flags", "cap", "isa"), [({"avx2"}, None, "avx2"), (AVX512, None, "avx512_core"),
                                                   (AVX512, "AVX2", "avx2"), (AVX512, "bogus", "avx512_core"),
                                                   ({"sse4_1"}, None, "sse41"), (set(), None, "")])
def test_onednn_isa_follows_the_cpu_flags_and_the_cap_of_onednn_max_cpu_isa(flags, cap, isa):
    assert numerics.onednn_isa(flags, cap) == isa


def test_compile_on_cpu_in_pinned_mode_is_refused_in_one_line(monkeypatch):
    import torch

    from pfs.models import build_model
    from pfs.training.distributed import Dist
    from pfs.training.loop import TrainConfig, _place_model

    monkeypatch.setenv(numerics.MODE_ENV, "pinned")
    model = build_model("resnet20", num_classes=10)
    with pytest.raises(PfsError, match="train.compile: true with numerics.mode: pinned on CPU"):
        _place_model(model, TrainConfig(compile=True), torch.device("cpu"), Dist())
    monkeypatch.setenv(numerics.MODE_ENV, "native")
    assert _place_model(model, TrainConfig(compile=False), torch.device("cpu"), Dist()) is model
