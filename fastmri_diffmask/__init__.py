"""fastmri-diffmask: learn k-space sampling masks with a diffusion prior (a fastMRI plugin).

After Ravula et al., "Optimizing Sampling Patterns for Compressed Sensing MRI with Diffusion
Generative Models", arXiv 2306.03284 (2023).
"""

__version__ = "0.1.0"

_LAZY = {
    "LearnedDiffusionMaskFunc": ".masks.fastmri_adapter",
    "create_mask_for_mask_type": ".masks.fastmri_adapter",
    "DiffusionDataTransform": ".transforms",
    "load_prior": ".prior.weights",
    "DiffusionPosteriorModel": ".sample.model",
    "load_mask_file": ".masks.file",
    "save_mask_file": ".masks.file",
    "MaskFile": ".masks.file",
}


def __getattr__(name):  # lazy imports keep `import fastmri_diffmask` cheap
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
