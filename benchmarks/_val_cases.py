"""The (R, mask, ESPIRiT maps) cases the tuning scripts share (``tune_recon.py``, ``tune_dps.py``).

The study's fixed line masks (seed 0) with centres of 16 (R <= 4) and 10 (R > 4) lines on the
loaded slices, and ESPIRiT (BART) maps from each mask's own undersampled centre.
"""

import numpy as np


def load_cases(data_dir: str, split: str, num_slices: int, accelerations, masks):
    """``(data, [(R, mask_type, MaskSample, maps)])`` for every R and mask type."""
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.masks.select import make_mask
    from fastmri_diffmask.recon.run import sens_maps_for

    data = load_slices(data_dir, split, num_slices=num_slices, sens_backend="none")
    k = data.kspace.numpy()
    cases = []
    for r in accelerations:
        nlf = 16 if r <= 4 else 10
        for mt in masks:
            m = make_mask(mt, k.shape[-2:], r, nlf, seed=0)
            maps = np.stack([sens_maps_for(k[i] * m.mask, None, nlf, "espirit-bart") for i in range(len(k))])
            cases.append((r, mt, m, maps))
    return data, cases
