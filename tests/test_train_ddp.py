"""``train_prior`` under torch.distributed (gloo on CPU, 2 processes launched as torchrun does):
DDP keeps the ranks' weights identical, they move away from the initial weights, the gradients
really are averaged across ranks, and only rank 0 writes files."""

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from fastmri_diffmask.prior.weights import load_prior

STEPS, BATCH, SEED = 3, 2, 0

# One rank: train a tiny prior on tiny images, then write a hash of its EMA (and raw) weights.
WORKER = textwrap.dedent("""
    import hashlib, json, os, sys
    import torch
    from fastmri_diffmask.prior.edm import EDMPrecond
    from fastmri_diffmask.prior.train import TrainConfig, train_prior
    from fastmri_diffmask.prior.unet import PRESETS, UNet

    torch.set_num_threads(1)

    def digest(module):
        h = hashlib.sha256()
        for k, v in sorted(module.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    out, report = sys.argv[1], sys.argv[2]
    steps, batch, seed, resume = (int(v) for v in sys.argv[3:7])
    g = torch.Generator().manual_seed(123)  # the same training images on every rank
    images = torch.complex(torch.randn(6, 16, 16, generator=g), torch.randn(6, 16, 16, generator=g))
    cfg = TrainConfig(steps=steps, batch=batch, preset="tiny", seed=seed, warmup=1, lr=1e-3,
                      checkpoint_every=1000, log_every=1, ema_decay=0.5)
    card = train_prior(images, out, cfg, resume=bool(resume), device="cpu", progress=False)
    torch.manual_seed(seed)  # train_prior's initial weights
    init = EDMPrecond(UNet(in_channels=2, **PRESETS["tiny"]))
    with open(report, "w") as f:
        json.dump({"rank": int(os.environ.get("RANK", "0")), "world": card["world_size"],
                   "ema": digest(card["_ema"]), "init": digest(init), "loss": card["final_loss"]}, f)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _start(tmp_path, world: int, name: str, steps: int = STEPS, resume: bool = False) -> list:
    """Start the worker as ``world`` processes with torchrun's environment (none when world = 1)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
            env.pop(k, None)
        if world > 1:
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                       WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world), GLOO_SOCKET_IFNAME="lo")
        report = tmp_path / f"{name}_rank{rank}.json"
        report.unlink(missing_ok=True)
        args = [str(tmp_path / f"{name}.safetensors"), str(report), str(steps), str(BATCH), str(SEED), str(int(resume))]
        procs.append((report, subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True)))
    return procs


def _reports(procs: list) -> list[dict]:
    """Wait for the processes of :func:`_start`; their reports, in rank order."""
    reports = []
    for report, p in procs:
        try:
            output, _ = p.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for _, q in procs:
                q.kill()
            pytest.fail("a rank hung (deadlock in the process group?)")
        assert p.returncode == 0, output[-3000:]
        reports.append(json.loads(report.read_text()))
    return reports


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    ddp, single = _start(tmp, 2, "ddp"), _start(tmp, 1, "single")  # concurrently: 3 processes
    return tmp, _reports(ddp), _reports(single)


def test_ranks_end_with_identical_weights_that_moved(runs):
    _, (r0, r1), _ = runs
    assert (r0["rank"], r1["rank"]) == (0, 1) and r0["world"] == r1["world"] == 2
    assert r0["ema"] == r1["ema"], "DDP ranks diverged"
    assert r0["init"] == r1["init"]
    assert r0["ema"] != r0["init"], "training did not change the weights"
    # each rank draws its own batches, so the losses they saw differ even though the weights agree
    assert r0["loss"] != r1["loss"]


def _losses(path) -> list[float]:
    with open(path, newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_gradients_are_averaged_across_ranks(runs):
    # rank 0 of the DDP run starts from the single-process run's weights with its batches: the
    # first losses agree, so only the other rank's gradients, averaged in, can set them apart
    tmp, (r0, _), (single,) = runs
    assert single["world"] == 1 and single["init"] == r0["init"]
    ddp_losses, single_losses = _losses(tmp / "ddp.csv"), _losses(tmp / "single.csv")
    assert len(ddp_losses) == len(single_losses) == STEPS
    assert ddp_losses[0] == pytest.approx(single_losses[0], rel=1e-6)
    assert single["ema"] != r0["ema"]


def test_only_rank_0_writes_the_prior_and_it_holds_the_synced_weights(runs):
    tmp, (r0, _), _ = runs
    out = tmp / "ddp.safetensors"
    assert out.is_file() and (tmp / "ddp.ckpt.safetensors").is_file() and (tmp / "ddp.csv").is_file()
    prior = load_prior(out, device="cpu")
    assert prior.config["world_size"] == 2 and prior.config["steps"] == STEPS
    assert _digest(prior) == r0["ema"]
    assert not [p for p in tmp.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


@pytest.mark.slow
def test_resumed_ddp_ranks_stay_in_sync_and_draw_their_own_batches(tmp_path):
    first = _reports(_start(tmp_path, 2, "resume", steps=STEPS - 1))
    assert first[0]["ema"] == first[1]["ema"]
    r0, r1 = _reports(_start(tmp_path, 2, "resume", steps=STEPS, resume=True))
    assert r0["ema"] == r1["ema"] and r0["ema"] != first[0]["ema"]
    assert len(_losses(tmp_path / "resume.csv")) == STEPS
    # the checkpoint holds rank 0's generator; had rank 1 restored it too, both ranks would draw
    # the same batch and noise from the same weights and see the same loss at the resumed step
    assert r0["loss"] != r1["loss"]
