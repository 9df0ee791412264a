"""Readout oversampling (fastMRI knee: encodedSpace x = 2 reconSpace x): ``readout_crop="auto"``
crops k-space to the reconSpace rows in image space, exactly as cropping the image; ``off`` keeps
the stored arrays bit for bit; recon on a cropped file runs and scores against the unchanged target."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.dataset import file_shape, load_slices, read_volume
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.io.readout import crop_readout, readout_rows
from fastmri_diffmask.simulate import ifft2c_np

sys.path.insert(0, str(Path(__file__).parent))
from fastmri_files import ismrmrd_header, write_multicoil_volume  # noqa: E402

torch.set_num_threads(1)
RX, W = 32, 48          # reconSpace rows; the file holds 2 * RX readout samples
TOP = RX // 2           # fastMRI's centre crop of 64 rows to 32 starts at (64 - 32) // 2


@pytest.fixture(scope="module")
def oversampled(tmp_path_factory):
    """A test split of one 2x readout-oversampled file (3 slices, 4 coils, maps in the file);
    its target is the central RX rows of the full RSS image, as in fastMRI's knee files."""
    root = tmp_path_factory.mktemp("oversampled")
    path = write_multicoil_volume(root / "test" / "knee.h5", num_slices=3, coils=4, height=2 * RX, width=W,
                                  recon=(RX, W), seed=3, sens_maps=True)
    return root, path


def test_cropped_kspace_images_are_the_central_rows_and_the_target_is_unchanged(oversampled):
    root, path = oversampled
    full = load_slices(root, "test", sens_backend="file", readout_crop="off")
    crop = load_slices(root, "test", sens_backend="file")  # auto is the default
    assert full.kspace.shape == (3, 4, 2 * RX, W) and crop.kspace.shape == (3, 4, RX, W)
    assert crop.sens_maps.shape == (3, 4, RX, W) and crop.kspace.dtype == torch.complex64
    coil_full, coil_crop = ifft2c_np(full.kspace.numpy()), ifft2c_np(crop.kspace.numpy())
    err = np.abs(coil_crop - coil_full[..., TOP:TOP + RX, :]).max() / np.abs(coil_full).max()
    assert err < 1e-5, err
    assert torch.equal(crop.sens_maps, full.sens_maps[..., TOP:TOP + RX, :])  # maps are images: cut, not resampled
    comb_full, comb_crop = full.images.numpy(), crop.images.numpy()
    assert np.abs(comb_crop - comb_full[..., TOP:TOP + RX, :]).max() < 1e-5 * np.abs(comb_full).max()
    assert torch.equal(crop.target, full.target) and crop.target.shape == (3, RX, W)
    with h5py.File(path) as f:
        assert np.array_equal(crop.target.numpy(), f["reconstruction_rss"][()])
    rss = np.sqrt((np.abs(coil_crop) ** 2).sum(1))  # the cropped k-space reproduces the file's target
    assert np.abs(rss - crop.target.numpy()).max() < 0.05 * crop.target.numpy().max()
    assert crop.acquired == full.acquired and torch.equal(crop.max_values, full.max_values)
    assert file_shape(path) == (RX, W) and file_shape(path, "off") == (2 * RX, W)


def test_crop_matches_fastmris_own_ifft2c_and_centre_crop(oversampled):
    """fastMRI's conventions (fastmri.ifft2c, complex_center_crop), odd crop sizes included."""
    import fastmri
    from fastmri.data.transforms import complex_center_crop

    _, path = oversampled
    with h5py.File(path) as f:
        k = f["kspace"][0]
    for rows in (RX, 31, 17):
        img = fastmri.ifft2c(torch.view_as_real(torch.from_numpy(k)))
        want = complex_center_crop(img, (rows, W))
        got = fastmri.ifft2c(torch.view_as_real(torch.from_numpy(crop_readout(k, rows))))
        assert got.shape == want.shape and (got - want).abs().max() < 1e-5 * img.abs().max()


def test_off_is_bit_identical_to_the_stored_arrays(oversampled):
    _, path = oversampled
    vol = read_volume(path, "off")
    with h5py.File(path) as f:
        assert np.array_equal(vol["kspace"], f["kspace"][()]) and np.array_equal(vol["sens_maps"], f["sens_maps"][()])
    assert vol["readout"] == (2 * RX, 2 * RX) and read_volume(path)["readout"] == (2 * RX, RX)


def test_readout_rows_crops_only_what_the_header_says_is_oversampled():
    hdr = ismrmrd_header((640, 368, 1), (320, 320, 1), 184, 367)
    assert readout_rows(hdr, 640) == 320 and readout_rows(hdr, 640, "off") == 640
    assert readout_rows(hdr, 320) == 320       # k-space already cropped: the header does not describe it
    assert readout_rows(ismrmrd_header((320, 368, 1), (320, 320, 1), 184, 367), 320) == 320  # not oversampled
    assert readout_rows(None, 640) == 640       # no header: nothing to go by
    with pytest.raises(UserError, match="--readout-crop"):
        readout_rows(hdr, 640, "on")
    with pytest.raises(UserError, match="not valid XML"):
        readout_rows(b"<broken", 640)


def _recon(root, out, method, sens, *extra):
    return main(["recon", "--data", str(root), "--split", "test", "--mask-type", "equispaced_fraction",
                 "--acceleration", "4", "--num-low-frequencies", "8", "--method", method, "--sens-maps", sens,
                 "--out", str(out),
                 "--device", "cpu", *extra])


@pytest.mark.parametrize("method, sens, extra", [("bart-l1", "espirit-bart", ("--max-iter", "20")),
                                                 ("dds", "file", ("--steps", "3"))])
def test_recon_on_the_cropped_grid_runs_and_scores_against_the_target(oversampled, tmp_path, capsys, method, sens,
                                                                      extra):
    root, path = oversampled
    assert _recon(root, tmp_path / "auto", method, sens, *extra) == 0
    err = capsys.readouterr().err
    assert f"{2 * RX} -> {RX}" in err and "readout oversampled" in err
    with h5py.File(tmp_path / "auto" / "reconstructions" / "knee.h5") as f, h5py.File(path) as src:
        rec, mask = f["reconstruction"][()], f["mask"][()]
        target = src["reconstruction_rss"][()]
    assert rec.shape == target.shape == (3, RX, W) and mask.shape[-1] == W and np.isfinite(rec).all()
    mean = json.loads((tmp_path / "auto" / "metrics.json").read_text())["mean"]
    assert np.isfinite(mean["psnr"]) and mean["psnr"] > 20 and 0 < mean["ssim"] <= 1, mean
    assert _recon(root, tmp_path / "off", method, sens, "--readout-crop", "off", *extra) == 0
    assert "readout oversampled" not in capsys.readouterr().err
    off = json.loads((tmp_path / "off" / "metrics.json").read_text())["mean"]
    assert np.isfinite(off["psnr"]) and off["psnr"] > 20, off  # both grids score against the same target


def test_train_prior_and_learn_mask_see_the_cropped_grid(oversampled, tmp_path, capsys):
    from fastmri_diffmask.masks.file import load_mask_file
    from fastmri_diffmask.prior.gaussian import GaussianPrior
    from fastmri_diffmask.prior.weights import _read, save_prior

    _, path = oversampled
    root = tmp_path / "data"
    for split, seed in (("train", 0), ("val", 1)):
        write_multicoil_volume(root / split / f"{split}.h5", num_slices=2, coils=2, height=2 * RX, width=W,
                               recon=(RX, W), seed=seed, sens_maps=True)
    out = tmp_path / "p.safetensors"
    assert main(["train-prior", "--data", str(root), "--out", str(out), "--steps", "2", "--batch", "2",
                 "--size-preset", "tiny", "--sens-backend", "file", "--checkpoint-every", "2", "--device", "cpu"]) == 0
    assert _read(out)[0]["image_size"] == [RX, W]
    # a Gaussian prior is bound to one size: learning refuses unless the data are on the cropped grid
    gauss = GaussianPrior(torch.zeros(RX, W, dtype=torch.complex64), torch.ones(RX, W))
    gpath = save_prior(tmp_path / "g.safetensors", gauss, gauss.config)
    mask = tmp_path / "m.safetensors"
    assert main(["learn-mask", "--data", str(root), "--prior", str(gpath), "--acceleration", "4", "--out", str(mask),
                 "--steps", "1", "--export", "topk", "--num-low-frequencies", "4", "--device", "cpu", "--quiet"]) == 0
    learned = load_mask_file(mask)
    assert learned.mask.shape == (W,)
    assert learned.metadata["readout"] == {"crop": "auto", "rows": RX, "columns": W}  # the grid it was learned on
    capsys.readouterr()
    assert main(["learn-mask", "--data", str(root), "--prior", str(gpath), "--acceleration", "4",
                 "--out", str(tmp_path / "m2.safetensors"), "--steps", "1", "--export", "topk",
                 "--num-low-frequencies", "4", "--device", "cpu", "--quiet", "--readout-crop", "off"]) == 2
    assert f"({2 * RX}, {W})" in capsys.readouterr().err


def test_study_config_key(tmp_path):
    from fastmri_diffmask.compare.config import parse_config

    base = {"data": str(tmp_path), "masks": [{"name": "e", "type": "equispaced_fraction"}], "methods": ["zero-filled"]}
    assert parse_config(base).readout_crop == "auto"
    assert parse_config({**base, "readout_crop": "off"}).readout_crop == "off"
    with pytest.raises(UserError, match="readout_crop must be auto or off"):
        parse_config({**base, "readout_crop": "on"})
    learned = {**base, "masks": [{"name": "l", "type": "learned_diffusion", "learn": {"readout_crop": "off"}}]}
    with pytest.raises(UserError, match="the study sets it"):
        parse_config(learned)
