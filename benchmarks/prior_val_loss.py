"""Validation denoising loss of priors on the prior corpus, overall and per subject (issue 14).

    python benchmarks/prior_val_loss.py default colin27-v1 [PRIOR.safetensors ...] [--data runs/prior_corpus]

The loss is the trainer's (``prior.train.validation_loss``: EDM-weighted, sigma 0.02 / 0.1 / 0.5 /
2, fixed noise) on the ``val`` split of ``scripts/make_prior_corpus.py``'s output; the subject of
a slice is its file name's prefix (``colin27``, ``icbm152``, ``inia19``). Prints one JSON line per prior.
"""

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("priors", nargs="+", help="shipped names (default, colin27-v1) or prior files")
    ap.add_argument("--data", default="runs/prior_corpus")
    ap.add_argument("--split", default="val")
    a = ap.parse_args()
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.prior.train import scaled_training_images, validation_loss
    from fastmri_diffmask.prior.weights import load_prior

    data = load_slices(a.data, a.split, sens_backend="file")
    images = scaled_training_images(data.images)
    subjects = sorted({name.split("_")[0] for name in data.fnames})
    for name in a.priors:
        prior = load_prior(name, device="cpu")
        row = {"prior": name, "sha256": prior.sha256[:12], "all": round(validation_loss(prior, [images]), 4)}
        for sub in subjects:
            idx = [i for i, f in enumerate(data.fnames) if f.split("_")[0] == sub]
            row[sub] = round(validation_loss(prior, [images[idx]]), 4)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
