"""Timed learn-mask on a knee-sized fastMRI-layout folder (640 x 368 encoded, 2x oversampled readout
-> 320 x 368 reconSpace, 15 coils, 16 zero-padded columns each side; phantom images from
tests/fastmri_files.py), with `--readout-crop auto` (the default) and `off`. learn-mask runs
trimmed (1 candidate per density judged by DDS-10 on 1 validation slice, 1 refinement sweep with
1 proposal per line by DDS-4 on 1 training slice) so both fit on 2 CPU cores; wall time and peak
RSS of each run from /usr/bin/time.

    OMP_NUM_THREADS=2 python benchmarks/bench_learn_mask_knee.py --out benchmarks/bench_learn_mask_knee.json
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TRIM = ["--steps", "0", "--export-draws", "1", "--select-slices", "1", "--dds-steps", "10", "--refine-sweeps", "1",
        "--refine-tries", "1", "--refine-slices", "1", "--refine-dds-steps", "4", "--num-train", "2", "--num-val", "1"]


def main() -> int:
    from fastmri_files import write_multicoil_volume

    ap = argparse.ArgumentParser()
    ap.add_argument("--acceleration", type=float, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "knee"
        for split, seed in (("train", 0), ("val", 1)):
            write_multicoil_volume(root / split / f"knee_{split}.h5", num_slices=2, coils=15, height=640, width=368,
                                   recon=(320, 368), pad=16, seed=seed, sens_maps=True)
        for crop in ("auto", "off"):
            out = Path(tmp) / f"mask_{crop}.safetensors"
            cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "fastmri_diffmask.cli.main", "learn-mask", "--data",
                   str(root), "--acceleration", str(args.acceleration), "--out", str(out), "--quiet", "--device", "cpu",
                   "--readout-crop", crop, *TRIM]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr[-2000:], file=sys.stderr)
                return 1
            wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", p.stderr).group(1)
            rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
            summary = json.loads(p.stdout.strip().splitlines()[-1])
            rows.append({"readout_crop": crop, "wall": wall, "learn_seconds": summary["wall_seconds"],
                         "peak_rss_mb": round(rss / 1024), "num_sampled": summary["num_sampled"],
                         "acceleration": summary["acceleration"]})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"trim": TRIM, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
