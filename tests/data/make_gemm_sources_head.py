"""Render kernel sources and record their sha256 (golden data for tests/test_gemm_sources.py),
so that later generator options can be shown to leave them unchanged. Run from the repository
root at the commit it records (`rendered_at`, before the direct form): at a later commit the
schedule sampling (DOMAINS) and test_matmul's SCHEDULES differ."""
import hashlib, itertools, json, random, subprocess, sys
sys.path.insert(0, "src")
from clgemm.kernels.gemm import Layout, render
from clgemm.schedule import DOMAINS, DeviceLimits, Schedule, SearchSpace
from clgemm.select.table import DEFAULT_CPU, DEFAULT_GPU

keys = [DEFAULT_CPU.key(), DEFAULT_GPU.key()]
keys.append(Schedule(wg_m=8, wg_n=8, out_m=2, out_n=2, tile_k=8, vec_a=1, vec_b=1, vec_c=1,
                     stage_a=1, stage_b=1, unroll_k=1, double_buffer=0, strided=1, local_pad=0).key())
for path in ["src/clgemm/data/tables/pthread-amd-epyc.json", "src/clgemm/data/tables/nvidia-h100-80gb-hbm3.json"]:
    d = json.load(open(path))
    keys.append(Schedule.from_dict(d["default"]).key())
    keys += [Schedule.from_dict(v).key() for v in d["entries"].values()]
src = open("tests/test_matmul.py").read()
# SCHEDULES of test_matmul (evaluated from its source)
ns = {"Schedule": Schedule}
start = src.index("SCHEDULES = [")
end = src.index("\n]\n", start) + 3
exec(src[start:end], ns)
keys += [s.key() for s in ns["SCHEDULES"]]
space = SearchSpace(DeviceLimits(max_work_group_size=1024, local_mem_bytes=64 * 1024))
rng = random.Random(5)
names = list(DOMAINS)
sampled = []
while len(sampled) < 200:
    s = Schedule(**{n: rng.choice(DOMAINS[n]) for n in names})
    if space.is_valid(s):
        sampled.append(s.key())
keys += sampled
keys = list(dict.fromkeys(keys))
layouts = [Layout(ta, tb, aa, ab, ac) for ta, tb in itertools.product([False, True], repeat=2)
           for aa, ab, ac in [(False, False, False), (True, True, True)]]
out = {}
for key in keys:
    s = Schedule.from_key(key)
    h = hashlib.sha256()
    for i, lay in enumerate(layouts):  # every layout; fault injection on the unaligned ones
        h.update(render(s, lay).encode())
        if i % 2 == 0:
            h.update(render(s, lay, fault_injection=True).encode())
    out[key] = h.hexdigest()
head = subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()
json.dump({"rendered_at": head, "generator": "src/clgemm/kernels/gemm.py", "sha256": out},
          open("tests/data/gemm_sources_head.json", "w"), indent=0, sort_keys=True)
print(len(keys), len(out))
