"""DPS seconds per slice with the prior in the default (NCHW) and channels_last memory layouts.

    python benchmarks/bench_layout.py --batch 6 --steps 10 --repeats 3

``load_prior`` returns channels_last priors; this measures what that buys. Random k-space and
unit-norm random coil maps (8 coils, 128^2, an R = 4 line mask): the timing does not depend on
the data. The two layouts alternate, ``--repeats`` times; the median is reported, scaled to
100 DPS steps (with the final data-consistency step).
"""

import argparse
import copy
import json
import time

import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from fastmri_diffmask.prior.weights import load_prior
    from fastmri_diffmask.sample.dps import dps_reconstruct

    last = load_prior("default", device="cpu")
    nchw = copy.deepcopy(last).to(memory_format=torch.contiguous_format)
    g = torch.Generator().manual_seed(0)
    b, c, n = a.batch, 8, 128
    k = torch.randn(b, c, n, n, dtype=torch.complex64, generator=g)
    maps = torch.randn(b, c, n, n, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = torch.zeros(1, 1, 1, n)
    mask[..., ::4] = 1
    mask[..., n // 2 - 8:n // 2 + 8] = 1

    def seconds_per_slice(prior):
        t0 = time.perf_counter()
        dps_reconstruct(prior, k * mask, mask, maps, steps=a.steps, progress=False, dc_weight=0.03,
                        generator=torch.Generator().manual_seed(0))
        return (time.perf_counter() - t0) / b * 100 / a.steps

    seconds_per_slice(last)  # warm-up
    times = {"nchw": [], "channels_last": []}
    for _ in range(a.repeats):
        times["nchw"].append(seconds_per_slice(nchw))
        times["channels_last"].append(seconds_per_slice(last))
    med = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
    print(json.dumps({"batch": b, "threads": a.threads, "seconds_per_slice_100_steps": {k2: round(v, 2) for k2, v in med.items()},
                      "runs": {k2: [round(x, 2) for x in v] for k2, v in times.items()},
                      "speedup": round(med["nchw"] / med["channels_last"], 3)}))


if __name__ == "__main__":
    main()
