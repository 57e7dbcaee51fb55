"""The quickstart pipeline through the Python API (what the CLI verbs call).

Run: python examples/pipeline_api.py [OUT_DIR]
"""

import os
import sys

from vdgtool.evaluate.run import evaluate
from vdgtool.stores import open_store
from vdgtool.train.config import TrainConfig
from vdgtool.train.engine import train
from vdgtool.video.decode import DecodeOptions
from vdgtool.video.extract import extract
from vdgtool.video.manifest import load_manifest
from vdgtool.video.toydata import make_toy_dataset

out = sys.argv[1] if len(sys.argv) > 1 else "api_demo"
os.makedirs(out, exist_ok=True)

# 1. toy data (vdgtool toydata)
make_toy_dataset(f"{out}/toy", videos_per_class=8, seed=0, overwrite=True)

# 2. clip stores (vdgtool extract)
opts = DecodeOptions(size=64)
for domain in ("real", "animated"):
    res = extract(load_manifest(f"{out}/toy/{domain}"), f"{out}/{domain}.h5", opts=opts, encoding="raw",
                  overwrite=True)
    print(domain, res.videos, "videos,", len(res.errors), "bad inputs")

# 3. store metadata (vdgtool store info)
st = open_store(f"{out}/real.h5")
print("classes:", st.classes, "frames of video 0:", st.read(0).shape)

# 4. training (vdgtool train)
cfg = TrainConfig(data=[f"{out}/real.h5"], val=[f"{out}/animated.h5"], output=f"{out}/run", model="test_c3d",
                  epochs=2, batch_size=8, lr=0.05)
train(cfg, overwrite=True)

# 5. evaluation (vdgtool eval)
r = evaluate(f"{out}/run", [f"{out}/real.h5", f"{out}/animated.h5"])
print({d: round(m["top1"], 3) for d, m in r["per_domain"].items()})
