"""Check convert-ismrmrd's noise prewhitening on an ISMRMRD phantom with correlated coil noise.

1. ``ismrmrd_generate_cartesian_shepp_logan`` writes a Cartesian phantom with a noise scan
   (``-C``) and its noise-free ground truth (``dataset/coil_images``, ``dataset/csm``,
   ``dataset/phantom``). Its noise is white and equal across coils.
2. A known complex coil mixing ``M`` (unequal gains, strong cross-talk) is applied to every
   acquisition, noise scan and imaging readouts alike: the noise covariance becomes
   ``sigma^2 M M^H`` and the coil sensitivities ``M csm``.
3. ``convert-ismrmrd`` converts the file with (default) and without (``--no-prewhiten``)
   prewhitening.
4. Whiteness: the imaging readouts' noise is ``kspace - T fft(coil_images)`` (``T = W M`` or
   ``M``) on the sampled lines; its sample covariance is compared with ``I`` and with the
   sampling error ``1/sqrt(N)`` of the noise scan (``N`` samples per coil). The result is also
   compared with ``bart whiten`` on the unwhitened k-space and the same noise samples.
5. Reconstruction: ``bart pics`` (l1-wavelet, a sweep of lambda) of repetition 0 (R = accel)
   (a) with the true sensitivities, mixed (``M csm``) or whitened (``W M csm``), scored against
   the phantom; (b) with ESPIRiT maps (``bart ecalib -m 1``) estimated from each file's own
   calibration lines, scored against the noise-free coil images combined with those maps.
   PSNR / SSIM as fastMRI defines them (``fastmri_diffmask.metrics``).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/prewhiten_check.py [--matrix 128 --coils 8 --noise 0.1]

Prints the numbers; writes nothing outside a temporary directory.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import h5py
import numpy as np

from fastmri_diffmask.cli.convert_ismrmrd import convert_ismrmrd
from fastmri_diffmask.io.bart import kspace_to_bart, run_bart
from fastmri_diffmask.io.ismrmrd_header import ACQ_IS_NOISE_MEASUREMENT, flag_bit
from fastmri_diffmask.io.ismrmrd_noise import noise_samples
from fastmri_diffmask.io.prewhiten import whitening_matrix
from fastmri_diffmask.metrics import score

GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"


def mixing_matrix(coils: int, seed: int = 0) -> np.ndarray:
    """Unequal coil gains (0.5 .. 3) times identity plus complex cross-talk (std 0.5)."""
    rng = np.random.default_rng(seed)
    cross = (rng.standard_normal((coils, coils)) + 1j * rng.standard_normal((coils, coils))) * 0.5
    return np.diag(np.geomspace(0.5, 3.0, coils)) @ (np.eye(coils) + cross)


def mix_file(path: Path, M: np.ndarray) -> None:
    with h5py.File(path, "r+") as f:
        rec = f["dataset/data"][()]
        for i in range(len(rec)):
            nc = int(rec["head"][i]["active_channels"])
            d = rec["data"][i].view(np.complex64).reshape(nc, -1)
            rec["data"][i] = (M @ d).astype(np.complex64).view(np.float32).reshape(-1)
        f["dataset/data"][...] = rec


def ground_truth(path: Path, matrix: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(coil_images, csm, phantom)`` as fastMRI (coils, rows = x, cols = y), oversampling cropped."""
    with h5py.File(path, "r") as f:
        c, s, p = (f[f"dataset/{k}"][()] for k in ("coil_images", "csm", "phantom"))
    c, s, p = ((a["real"] + 1j * a["imag"])[0] for a in (c, s, p))
    start = c.shape[-1] // 2 - matrix // 2
    return c[..., start:start + matrix].transpose(0, 2, 1), s.transpose(0, 2, 1), p.T


def fft2c(x):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def mix(T, x):
    return np.einsum("ij,j...->i...", T, x)


def whiteness(residual: np.ndarray) -> tuple[float, float]:
    """Max |C - I| and max off-diagonal |correlation coefficient| of ``(coils, n)`` noise."""
    C = residual @ residual.conj().T / residual.shape[1]
    d = np.sqrt(np.real(np.diag(C)))
    R = C / np.outer(d, d)
    return float(np.abs(C - np.eye(len(C))).max()), float(np.abs(R - np.diag(np.diag(R))).max())


def pics(kspace, mask, maps, lam):
    """``bart pics -S -l1`` with ``maps`` scaled to a peak root-sum-of-squares of 1 (pics' step
    size assumes an operator norm <= 1; the generator's sensitivities reach ~12) and the image
    scaled back, so it stays in the units of ``maps``' image."""
    s = float(np.sqrt((np.abs(maps) ** 2).sum(0)).max())
    k = kspace_to_bart(kspace * mask[None, None, :])
    x = run_bart(f"pics -S -l1 -r {lam} -i 100", k, kspace_to_bart(maps / s))
    return np.asarray(x).reshape(kspace.shape[-2:]) / s


def espirit(kspace, mask):
    return np.moveaxis(np.asarray(run_bart("ecalib -m 1", kspace_to_bart(kspace * mask))), -1, 0
                       ).reshape(kspace.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", type=int, default=128)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--accel", type=int, default=2)
    ap.add_argument("--calib", type=int, default=24)
    ap.add_argument("--noise", type=float, default=0.1, help="generator -n (std of real, imag parts)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the mixing matrix")
    ap.add_argument("--lambdas", default="0.001,0.003,0.01,0.03,0.1")
    a = ap.parse_args()
    lams = [float(v) for v in a.lambdas.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([GENERATOR, "-o", "p.h5", "-m", str(a.matrix), "-c", str(a.coils), "-a", str(a.accel),
                        "-w", str(a.calib), "-n", str(a.noise), "-C"], cwd=tmp, check=True, capture_output=True)
        src = tmp / "p.h5"
        M = mixing_matrix(a.coils, a.seed)
        mix_file(src, M)
        coil_images, csm, phantom = ground_truth(src, a.matrix)
        convert_ismrmrd(src, tmp / "w.h5", repetitions=0)
        convert_ismrmrd(src, tmp / "u.h5", repetitions=0, prewhiten=False)
        with h5py.File(tmp / "w.h5") as f, h5py.File(tmp / "u.h5") as g:
            kw, ku, mask = f["kspace"][0], g["kspace"][0], f["mask"][()].astype(np.float32)
            psi, n_noise = f["noise_covariance"][()], int(f.attrs["noise_samples"])
        with h5py.File(src) as f:
            rec = f["dataset/data"][()]
        noise = noise_samples(rec[(rec["head"]["flags"] & np.uint64(flag_bit(ACQ_IS_NOISE_MEASUREMENT))) != 0])
        W = whitening_matrix(psi)
        lines = mask > 0
        truth = fft2c(coil_images)
        res_w = (kw - mix(W @ M, truth))[..., lines].reshape(a.coils, -1)
        res_u = (ku - mix(M, truth))[..., lines].reshape(a.coils, -1)
        n_data = res_w.shape[1]
        dev_w, corr_w = whiteness(res_w)
        dev_u, corr_u = whiteness(res_u / np.sqrt(2 * a.noise ** 2))
        sigma2 = 2 * a.noise ** 2
        psi_err = np.abs(psi - sigma2 * M @ M.conj().T).max() / (sigma2 * np.abs(M @ M.conj().T).max())
        print(f"phantom {a.matrix}^2, {a.coils} coils, R = {a.accel} (repetition 0, {int(lines.sum())} lines), "
              f"generator noise {a.noise}, noise scan N = {n_noise} samples per coil, imaging noise "
              f"{n_data} samples per coil; 1/sqrt(N) = {1 / np.sqrt(n_noise):.4f}, "
              f"1/sqrt(n_imaging) = {1 / np.sqrt(n_data):.4f}")
        print(f"estimated Psi vs true sigma^2 M M^H: max entry error {psi_err:.4f} of max |Psi|")
        print(f"imaging noise covariance, whitened:   max|C - I| = {dev_w:.4f} "
              f"({dev_w * np.sqrt(n_noise):.2f} / sqrt(N)), max |corr| off-diagonal {corr_w:.4f}")
        print(f"imaging noise covariance, unwhitened (/sigma^2): max|C - I| = {dev_u:.3f}, "
              f"max |corr| off-diagonal {corr_u:.3f}")
        # BART's whiten on the same k-space and noise samples (it divides by N - 1, we by N)
        kb = np.asarray(run_bart("whiten", kspace_to_bart(ku), np.ascontiguousarray(noise.T)[:, None, None, :]))
        kb = np.moveaxis(kb.reshape(ku.shape[1], ku.shape[2], a.coils), -1, 0)
        kb = kb / np.sqrt((n_noise - 1) / n_noise)
        print(f"vs bart whiten (rescaled by sqrt(N/(N-1))): relative difference "
              f"{np.linalg.norm(kb - kw) / np.linalg.norm(kw):.2e}")

        print("\nbart pics -l1 (wavelet), PSNR dB / SSIM, best lambda in", lams)
        rows = []
        for name, maps_of, ref_of in (
            ("true sensitivities vs phantom", lambda T, k: mix(T, csm), lambda T, maps: phantom),
            ("ESPIRiT maps vs noise-free, same maps",
             lambda T, k: espirit(k, lines.astype(np.float32)),
             lambda T, maps: np.sum(np.conj(maps) * mix(T, coil_images), 0)),
        ):
            out = {}
            for label, T, k in (("unwhitened", M, ku), ("whitened", W @ M, kw)):
                maps = maps_of(T, k)
                ref = ref_of(T, maps)
                scores = {lam: score(ref, pics(k, mask, maps, lam)) for lam in lams}
                best = max(scores, key=lambda l: scores[l]["psnr"])
                out[label] = (best, scores)
            print(f"  {name}:")
            for label, (best, scores) in out.items():
                sweep = ", ".join(f"{lam:g}: {s['psnr']:.2f}" for lam, s in scores.items())
                print(f"    {label:10s} best lambda {best:g}: {scores[best]['psnr']:.2f} dB / "
                      f"{scores[best]['ssim']:.4f}   (sweep {sweep})")
            gain = out["whitened"][1][out["whitened"][0]]["psnr"] - out["unwhitened"][1][out["unwhitened"][0]]["psnr"]
            rows.append((name, gain))
        for name, gain in rows:
            print(f"  whitening gain ({name}): {gain:+.2f} dB")


if __name__ == "__main__":
    if shutil.which(GENERATOR) is None:
        raise SystemExit(f"{GENERATOR} not found; apt-get install ismrmrd-tools")
    main()
