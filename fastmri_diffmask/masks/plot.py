"""PNG preview of a mask file: the learned probabilities and the binary mask."""

from __future__ import annotations

from pathlib import Path


def plot_mask(mf, path: Path) -> Path:
    """PNG of the learned probabilities and the binary mask of ``mf`` (a
    :class:`~fastmri_diffmask.masks.file.MaskFile`), written atomically to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..utils import atomic_path

    title = f"{mf.kind} mask R={mf.acceleration:g} ({mf.num_sampled} samples, centre {mf.num_low_frequencies})"
    if mf.kind == "line":
        fig, ax = plt.subplots(2, 1, figsize=(8, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        cols = np.arange(mf.mask.size)
        ax[0].bar(cols, mf.probabilities, width=1.0, color="0.6", label="probability p'")
        ax[0].bar(cols[mf.mask > 0], mf.probabilities[mf.mask > 0], width=1.0, color="C0", label="sampled")
        ax[0].set_ylim(0, 1.02)
        ax[0].legend(loc="upper right", fontsize=7)
        ax[0].set_title(title, fontsize=9)
        ax[1].imshow(np.tile(mf.mask, (8, 1)), cmap="gray", aspect="auto", interpolation="nearest")
        ax[1].set_yticks([])
        ax[1].set_xlabel("phase-encode column")
    else:
        fig, ax = plt.subplots(1, 2, figsize=(8, 4))
        ax[0].imshow(mf.probabilities, cmap="viridis", vmin=0, vmax=1)
        ax[0].set_title("probability p'", fontsize=9)
        ax[1].imshow(mf.mask, cmap="gray", interpolation="nearest")
        ax[1].set_title(title, fontsize=9)
        for a in ax:
            a.set_axis_off()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
