"""Build the multi-subject training corpus of the default prior (issue 14) as fastMRI h5 files.

Sources: packaged real MRI only (named in ``fastmri_diffmask/prior/default/CORPUS.md``):

* ``colin27``: the embedded Colin27 axial slices (Debian ``mricron-data`` ``ch2.nii.gz``), its
  train split into ``train/`` (``--colin27-repeats`` independent simulations of coils, phase and
  noise, default 3, so the one head with a skull is about a third of the corpus: with one copy,
  16%, the fine-tuned prior's validation loss on Colin27 rose 13% while falling 25% on the
  others) and its validation block into ``val/``, as ``make-data`` writes them. Only axial slices: a coronal or sagittal Colin27 slice would cross the axial test
  block, which stays held out for continuity with every earlier benchmark.
* ``icbm152``: nilearn's ICBM152 2009a nonlinear symmetric T1 template (an average of 152
  adults, taken from the nilearn wheel, nothing installed), all three orientations.
* ``inia19``: the INIA19 rhesus macaque T1 template (``mricron-data``, skull-stripped), all three
  orientations.

For icbm152 and inia19 a block of ``VAL_BLOCK`` axial slices from the middle of the volume (with
``GAP`` slices dropped on each side) goes to ``val/``; their coronal and sagittal slices cross
that block, so their validation loss is an optimistic one: the subjects the prior is judged on
are the held-out test subjects of ``scripts/make_heldout_data.sh``, never any of these.

Each file has its own simulated coils, smooth phase and noise (SNR drawn in [42, 55] dB) through
:func:`fastmri_diffmask.simulate.simulate_volume`. The trainer adds rotation, scale, shift,
flips, contrast and phase augmentation on the fly (``train-prior --augment full``).

Usage::

    python scripts/make_prior_corpus.py --out runs/prior_corpus [--size 128]
"""

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

MRICRON = Path("/usr/share/mricron/templates")
NILEARN_VERSION = "0.14.1"
NILEARN_MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
VAL_BLOCK, GAP = 10, 3
AXES = {0: "sag", 1: "cor", 2: "ax"}


def nilearn_template(cache: Path) -> Path:
    """The ICBM152 2009a T1 template extracted from the nilearn wheel (pip download, no install)."""
    dest = cache / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    if dest.is_file():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob(f"nilearn-{NILEARN_VERSION}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", f"nilearn=={NILEARN_VERSION}", "--no-deps",
                        "--only-binary=:all:", "-q", "-d", str(cache)], check=True)
        wheels = sorted(cache.glob(f"nilearn-{NILEARN_VERSION}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z, z.open(NILEARN_MEMBER) as src:
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(src.read())
        tmp.replace(dest)
    return dest


def split_axial(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices of ``n`` axial slices: a middle block of VAL_BLOCK for
    validation, GAP slices dropped on each side."""
    start = n // 2 - VAL_BLOCK // 2
    val = np.arange(start, start + VAL_BLOCK)
    held = set(range(start - GAP, start + VAL_BLOCK + GAP))
    return np.asarray([i for i in range(n) if i not in held]), val


def write_source(name: str, path: Path, out: Path, size: int, coils: int, seed: int, per_file: int) -> dict:
    from fastmri_diffmask.magnitude import load_magnitude_slices
    from fastmri_diffmask.simulate import chunks, simulate_volume, write_volume
    from fastmri_diffmask.utils import file_sha256

    counts = {"train": 0, "val": 0}
    sha = file_sha256(path)
    for axis, tag in AXES.items():
        mags, index = load_magnitude_slices(path, size, axis)
        train, val = split_axial(len(mags)) if tag == "ax" else (np.arange(len(mags)), np.arange(0))
        for split, idx in (("train", train), ("val", val)):
            for j, part in enumerate(chunks(idx, per_file)):
                rng = np.random.default_rng([seed, sum(map(ord, name)), axis, j, split == "val"])
                snr = float(rng.uniform(42.0, 55.0))
                vol = simulate_volume(mags[part], coils, snr, rng)
                attrs = {"data_id": f"prior-corpus:{name}", "source_file": path.name, "source_sha256": sha,
                         "patient_id": name, "orientation": tag, "slice_index": index[part], "snr_db": snr}
                write_volume(out / split / f"{name}_{tag}_{j:02d}.h5", vol, acquisition="T1", extra_attrs=attrs)
                counts[split] += len(part)
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/prior_corpus")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="runs/.cache/nilearn")
    p.add_argument("--colin27-repeats", type=int, default=3)
    a = p.parse_args()
    from fastmri_diffmask.simulate import write_embedded_dataset

    out = Path(a.out)
    if out.exists() and any(out.rglob("*.h5")):
        sys.exit(f"make_prior_corpus: {out} already holds h5 files; remove it or choose another --out")
    sources = {"icbm152": nilearn_template(Path(a.cache)), "inia19": MRICRON / "inia19-t1-brain.nii.gz"}
    for name, path in sources.items():
        if not path.is_file():
            sys.exit(f"make_prior_corpus: {path} is missing; apt-get install -y mricron-data")
    write_embedded_dataset(out, "val", a.size, a.coils, 50.0, a.seed, 12)
    (out / "train").mkdir(parents=True, exist_ok=True)
    for r in range(a.colin27_repeats):  # repeat 0 is make-data's own train split
        tmp = out / f".colin27_r{r}"
        for path in write_embedded_dataset(tmp, "train", a.size, a.coils, 50.0, a.seed + r, 12):
            path.rename(out / "train" / path.name.replace("colin27_train_", f"colin27_train_r{r}_"))
        (tmp / "train").rmdir()
        tmp.rmdir()
    for name, path in sources.items():
        counts = write_source(name, path, out, a.size, a.coils, a.seed, 12)
        print(f"{name}: {counts['train']} train, {counts['val']} val slices")
    print(f"wrote {out}/train and {out}/val")


if __name__ == "__main__":
    main()
