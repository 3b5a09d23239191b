"""The GPU path, checked on a CPU (issue #44): what a GPU user would hit, reproduced where it can be."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ENV, REPO

from infer.errors import UserError

# Tiny runs: what these tests check does not depend on width or data size.
TINY_RUN = ["--limit", "128", "--batch-size", "64", "--eval-every", "0", "--device", "cpu", "--g-width", "8",
            "--d-width", "8", "--no-tensorboard", "--sample-every", "1000"]


def test_export_leaves_out_a_cuda_provider_that_cannot_run(models, tmp_path, monkeypatch):
    """A GPU machine whose onnxruntime CUDA provider cannot load: the CPU check still guards, the file is written,
    and the report says CUDA was not checked instead of a traceback or a false failure."""
    import exporter.export as ex

    monkeypatch.setattr(ex, "available_providers", lambda: ["CPUExecutionProvider", "CUDAExecutionProvider"])
    report = ex.export(models[28, True][0], tmp_path / "g.onnx")
    assert report.path.is_file()
    assert max(report.parity["CPUExecutionProvider"].values()) <= ex.TOLERANCE["fp32"]
    assert report.unchecked == ["CUDAExecutionProvider"]  # no CUDA here; on a GPU it runs with TF32 off


def test_gpu_check_without_cuda_says_so_and_exits_77(tmp_path):
    """benchmarks/gpu_check.py on a machine without CUDA: one line saying so, the documented status, no work."""
    env = {**ENV, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 77, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0], result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


# ---- the trainer on GPUs (issue #44) -------------------------------------------------------------


def test_gpus_the_torch_wheel_has_no_kernels_for_are_recognised():
    """P100 (6.0), V100 (7.0) and GTX 10xx (6.1) get no kernels from torch's CUDA 13 wheel; Turing and newer do,
    a newer minor runs the same major's code (8.9 on sm_86), and PTX covers what comes after it."""
    from trainer.device import has_kernels

    wheel = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]  # torch.cuda.get_arch_list() of 2.14.1+cu130
    assert [has_kernels(c, wheel) for c in ((6, 0), (6, 1), (7, 0))] == [False, False, False]
    assert all(has_kernels(c, wheel) for c in ((7, 5), (8, 0), (8, 9), (9, 0), (12, 0)))
    assert has_kernels((6, 1), ["sm_50", "sm_60"]) and not has_kernels((8, 0), ["sm_90a"])
    assert has_kernels((10, 0), ["sm_80", "compute_90"]) and not has_kernels((8, 6), ["compute_90"])


def test_bf16_only_where_the_gpu_runs_it_natively():
    """A T4 or V100 counts as bf16-capable to torch.cuda.is_bf16_supported() (emulated), where cuDNN has no bf16
    convolutions: auto trains those in fp32, and asking for bf16 there is one clear error."""
    from trainer.device import cuda_precision

    assert cuda_precision("auto", (7, 5)) == "fp32" and cuda_precision("auto", (7, 0)) == "fp32"
    assert cuda_precision("auto", (8, 0)) == "bf16" and cuda_precision("auto", (9, 0)) == "bf16"
    assert cuda_precision("fp32", (9, 0)) == "fp32"
    with pytest.raises(UserError, match="no native bfloat16"):
        cuda_precision("bf16", (7, 5))


def test_out_of_memory_while_moving_to_the_device_is_one_line():
    from trainer.device import moving_to

    with pytest.raises(UserError, match="out of memory on cuda:0 while moving the training images"):
        with moving_to(torch.device("cuda:0"), "the training images"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(ValueError):  # anything else passes through
        with moving_to(torch.device("cuda:0"), "the models"):
            raise ValueError("not memory")


def test_a_gpu_checkpoint_resumes_on_the_cpu_with_its_noise_reseeded(tmp_path, capsys):
    """The noise generator's state is 16 bytes on CUDA and 5,056 on the CPU, so a GPU checkpoint was refused as
    "does not fit this model". It now resumes with a stated reseed that is the same on every machine; the
    global CUDA RNG state a 2-GPU machine wrote (a traceback with fewer GPUs) is ignored, and none is saved."""
    from trainer.cli import main

    first = tmp_path / "first"
    assert main([*TINY_RUN, "--epochs", "1", "--out", str(first)]) == 0
    ckpt = torch.load(first / "checkpoints" / "last.pt", weights_only=True)
    assert set(ckpt["rng"]) == {"noise", "noise_ranks", "torch"}  # no global CUDA state: reading it starts CUDA
    philox = torch.arange(16, dtype=torch.uint8)  # a CUDA generator's state: Philox seed and offset
    ckpt["rng"].update(noise=philox, noise_ranks=[philox], cuda=[philox, philox])
    torch.save(ckpt, first / "checkpoints" / "last.pt")
    second = tmp_path / "second"
    shutil.copytree(first, second)
    capsys.readouterr()
    assert main(["--resume", "--epochs", "2", "--out", str(first)]) == 0
    err = capsys.readouterr().err
    assert "note: the checkpoint's noise state is from another kind of device than cpu" in err, err
    assert main(["--resume", "--epochs", "2", "--out", str(second)]) == 0
    a, b = (torch.load(out / "generator.pth", weights_only=True)["state_dict"] for out in (first, second))
    assert all(torch.equal(a[name], b[name]) for name in a)  # the reseed is deterministic


@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_compile_with_r1_and_the_gradient_penalty(loss, monkeypatch):
    """R1 (on by default) and wgan-gp's gradient penalty take a double backward, which torch.compile's
    aot_autograd refuses: `--compile` crashed at step 0. The penalties now run on the uncompiled D, and the step
    gives what the uncompiled step gives. (aot_eager: the same aot_autograd as the default backend, without
    its C++ compilation, so the test stays quick on a CPU.)"""
    from trainer.config import TrainConfig
    from trainer.distributed import Distributed
    from trainer.model import ModelConfig, build_models
    from trainer.step import GanStep
    from trainer.train import training_forwards

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    cfg = TrainConfig(loss=loss, batch_size=8, latent_dim=8, g_width=4, d_width=4, r1=0.1, aux_weight=0.0)
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        generator, discriminator = build_models(ModelConfig(latent_dim=8, g_width=4, d_width=4, d_norm=cfg.d_norm))
        opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=cfg.lr_g) for m in (generator, discriminator))
        forwards = training_forwards(generator, discriminator, Distributed(), torch.device("cpu"), compiled)
        step = GanStep(cfg, generator, discriminator, opt_g, opt_d, torch.Generator().manual_seed(0), "fp32",
                       forwards)
        real, labels = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1, torch.arange(8)
        results.append(step(real, labels, 0).metrics[0].detach())  # step 0: R1's step
    torch.testing.assert_close(results[1], results[0], rtol=1e-4, atol=1e-5)


def test_under_torchrun_the_device_decides_cuda_and_an_unsupported_gpu_falls_back(monkeypatch):
    """--device cpu never asks for CUDA (no set_device, no NCCL); auto on a GPU without kernels trains on the CPU."""
    from trainer import device
    from trainer.distributed import Distributed

    rank1 = Distributed(rank=1, world_size=2, local_rank=1, launched=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(device, "unsupported_gpu", lambda _device: "Tesla V100 has no kernels")
    assert not rank1.trains_on_cuda("cpu") and rank1.device_name("cpu") == "cpu"
    assert not rank1.trains_on_cuda("auto") and rank1.device_name("auto") == "auto"
    assert rank1.device_name("cuda") == "cuda:1"  # asked for: resolve_device then refuses it in one line
    monkeypatch.setattr(device, "unsupported_gpu", lambda _device: "")
    assert rank1.trains_on_cuda("auto") and rank1.device_name("auto") == "cuda:1"
