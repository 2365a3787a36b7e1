"""Generator options added later leave every earlier schedule's kernel source byte-identical.

`data/gemm_sources_head.json` holds, per schedule key, the sha256 of the sources that
`kernels/gemm.py` rendered at commit `rendered_at` (before the direct form existed) for every
layout (transposes x alignment, fault injection on the unaligned ones); the keys are the
defaults, the shipped tables' schedules, test_matmul's schedules and 200 random valid ones.
`data/make_gemm_sources_head.py` is the script that wrote it. A change meant to alter every
kernel re-renders the same keys (its `re_rendered` note says which change): once, for the
accumulation chunk of at most K / 8 (the exact contract at small K).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

from clgemm.kernels.gemm import Layout, render
from clgemm.schedule import Schedule

GOLDEN = json.loads((Path(__file__).parent / "data" / "gemm_sources_head.json").read_text())
LAYOUTS = [Layout(ta, tb, aa, ab, ac) for ta, tb in itertools.product([False, True], repeat=2)
           for aa, ab, ac in [(False, False, False), (True, True, True)]]


def _digest(schedule: Schedule) -> str:
    h = hashlib.sha256()
    for i, layout in enumerate(LAYOUTS):
        h.update(render(schedule, layout).encode())
        if i % 2 == 0:
            h.update(render(schedule, layout, fault_injection=True).encode())
    return h.hexdigest()


def test_earlier_schedules_render_byte_identical():
    assert len(GOLDEN["sha256"]) > 200
    changed = [key for key, digest in GOLDEN["sha256"].items()
               if _digest(Schedule.from_key(key)) != digest]
    assert not changed, f"{len(changed)} earlier schedules render differently, e.g. {changed[:3]}"


def test_earlier_keys_parse_to_the_work_group_form():
    for key in GOLDEN["sha256"]:
        s = Schedule.from_key(key)
        assert s.direct == 0 and s.key() == key
