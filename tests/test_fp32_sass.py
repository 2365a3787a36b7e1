"""benchmarks/kpi/fp32_sass.py's reading of ptxas and cuobjdump output (the GPU campaign
that runs them needs the card; the text it reads does not)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "fp32_sass", Path(__file__).resolve().parents[1] / "benchmarks" / "kpi" / "fp32_sass.py")
sass = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sass)

# cuobjdump --dump-sass of a made-up kernel: a prologue, an outer loop whose body holds an
# inner loop of 4 FFMA (branching back by address) and another of 1 FFMA (by label)
TEXT = """
        Function : clgemm_sgemm
        /*0000*/                   LDC R1, c[0x0][0x28] ;                 /* 0x00000a00ff017b82 */
                                                                          /* 0x000fe20000000800 */
        /*0010*/                   S2R R0, SR_TID.X ;
        /*0020*/                   ISETP.GE.AND P0, PT, R0, 0x10, PT ;
.L_x_1:
        /*0030*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0040*/                   STS.128 [R9], R4 ;
        /*0050*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0060*/                   LDS.128 R12, [R10] ;
        /*0070*/                   FFMA R20, R12, R13, R20 ;
        /*0080*/                   FFMA R21, R12, R14, R21 ;
        /*0090*/                   FFMA R22, R12, R15, R22 ;
        /*00a0*/                   FFMA R23, R13, R14, R23 ;
        /*00b0*/              @!P0 BRA 0x60 ;
        /*00c0*/                   FFMA R24, R13, R15, R24 ;
        /*00d0*/               @P1 BRA `(.L_x_1) ;
        /*00e0*/                   STG.E [R2.64], R20 ;
        /*00f0*/                   EXIT ;
"""


def test_the_instruction_mix_of_the_hottest_loop():
    code = sass.parse_sass(TEXT)
    assert len(code) == 16 and code[0] == (0x0, "LDC", None)
    assert code[11] == (0xB0, "BRA", 0x60) and code[13] == (0xD0, "BRA", 0x30)
    loop = sass.hottest_loop(code)
    assert loop == (0x30, 0xD0)  # the outer body holds all 5 FFMA, the inner one 4
    inner = sass.mix(code, (0x60, 0xB0))
    assert inner["instructions"] == 6 and inner["opcodes"]["FFMA"] == 4
    assert abs(inner["ffma_share"] - 4 / 6) < 1e-12
    assert sass.mix(code)["opcodes"]["BRA"] == 2


def test_ptxas_verbose_output():
    log = ("ptxas info    : Compiling entry function 'clgemm_sgemm' for 'sm_90'\n"
           "ptxas info    : Function properties for clgemm_sgemm\n"
           "    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads\n"
           "ptxas info    : Used 168 registers, 16896 bytes smem, 440 bytes cmem[0]\n")
    assert sass.ptxas_info(log) == {"registers": 168, "spill_store_bytes": 12,
                                    "spill_load_bytes": 16, "smem_bytes": 16896,
                                    "stack_bytes": 8}
