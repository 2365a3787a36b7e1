"""Render a `Schedule` into OpenCL C for C = alpha * op(A) op(B) + beta * C.

Storage is row-major with leading dimensions; `trans_a`/`trans_b` say whether A is stored
K x M (instead of M x K) and B is stored N x K (instead of K x N). Column-major callers are
mapped onto this by the planner. Every kernel handles any M, N, K >= 0: loads outside the
matrix are zero-filled in local memory, stores are guarded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..schedule import Schedule

KERNEL_NAME = "clgemm_sgemm"


@dataclass(frozen=True)
class Layout:
    """What of the operands' storage is baked into the kernel (each value is one binary)."""

    trans_a: bool = False
    trans_b: bool = False
    aligned_a: bool = False  # lda and A's offset are multiples of vec_a: whole-vector loads
    aligned_b: bool = False
    aligned_c: bool = False  # ldc and C's offset are multiples of vec_c
    batched: bool = False  # a batch of products along the launch's third dimension
    # B packed in panels (direct form only; lanes/pack.py): panel p holds columns
    # p*out_n .. p*out_n + out_n - 1 of op(B) as its K rows of out_n floats, one after the
    # other (zeros past N), panels ldb elements apart
    panel_b: bool = False
    # C stored transposed (direct form only): the kernel's output element (i, j) goes to
    # C[j * ldc + i] (a product computed as its transpose, written straight into its C)
    trans_c: bool = False


def _vtype(width: int) -> str:
    return "float" if width == 1 else f"float{width}"


def _lanes(width: int) -> list[str]:
    return [""] if width == 1 else [f".s{i}" for i in range(width)]


def _load_operand(name: str, s: Schedule, layout: Layout) -> dict[str, str]:
    """Code that loads one K-step tile of A (or B) into registers, then into local memory.

    Local tiles are k-major (`X_s[k][outer]`), so the inner product reads consecutive outer
    indices. `outer` is m for A and n for B.
    """
    is_a = name == "A"
    vec = s.vec_a if is_a else s.vec_b
    tile_outer = s.tile_m if is_a else s.tile_n
    # Contiguous along K: A stored M x K (not transposed) or B stored N x K (transposed).
    k_contiguous = (not layout.trans_a) if is_a else layout.trans_b
    aligned = layout.aligned_a if is_a else layout.aligned_b
    outer_limit = "M" if is_a else "N"
    outer0 = "m0" if is_a else "n0"
    ld = "lda" if is_a else "ldb"
    loads = (tile_outer * s.tile_k) // (s.threads * vec)
    vt = _vtype(vec)
    lanes = _lanes(vec)
    reg = f"r{name.lower()}"
    local = f"{name}_s"
    per_row = (s.tile_k // vec) if k_contiguous else (tile_outer // vec)
    # Where vector `idx` of the tile lies: outer index `o` and K offset `kv` (the same split for
    # the global load and the local store).
    if k_contiguous:
        coords = f"    const int o = idx / {per_row}; const int kv = (idx % {per_row}) * {vec};"
    else:
        coords = f"    const int kv = idx / {per_row}; const int o = (idx % {per_row}) * {vec};"

    body = []
    for i in range(loads):
        body.append("  {")
        body.append(f"    const int idx = {i} * NT + tid;")
        body.append(coords)
        body.append(f"    const int go = {outer0} + o; const int gk = k0 + kv;")
        if k_contiguous:
            body.append(f"    __global const float* p = {name} + go * {ld} + gk;")
            full = f"go < {outer_limit} && gk + {vec} <= K"
            elem = [f"(go < {outer_limit} && gk + {x} < K)" for x in range(vec)]
        else:
            body.append(f"    __global const float* p = {name} + gk * {ld} + go;")
            full = f"gk < K && go + {vec} <= {outer_limit}"
            elem = [f"(gk < K && go + {x} < {outer_limit})" for x in range(vec)]
        if vec == 1:
            body.append(f"    {reg}[{i}] = ({full}) ? p[0] : 0.0f;")
        else:
            whole = f"*((__global const {vt}*)p)" if aligned else f"vload{vec}(0, p)"
            body.append(f"    if ({full}) {reg}[{i}] = {whole};")
            body.append("    else {")
            for x, lane in enumerate(lanes):
                body.append(f"      {reg}[{i}]{lane} = {elem[x]} ? p[{x}] : 0.0f;")
            body.append("    }")
        body.append("  }")
    store = []
    for i in range(loads):
        store.append("  {")
        store.append(f"    const int idx = {i} * NT + tid;")
        store.append(coords)
        if k_contiguous:
            for x, lane in enumerate(lanes):
                store.append(f"    {local}[BUF + (kv + {x}) * LD{name}S + o] = {reg}[{i}]{lane};")
        else:
            for x, lane in enumerate(lanes):
                store.append(f"    {local}[BUF + kv * LD{name}S + o + {x}] = {reg}[{i}]{lane};")
        store.append("  }")
    return {
        "decl": f"  {vt} {reg}[{loads}];",
        "global": "\n".join(body),
        "local": "\n".join(store),
    }


def render(s: Schedule, layout: Layout, fault_injection: bool = False,
           gated: bool = False) -> str:
    """OpenCL C source of one kernel. `fault_injection` adds a test-only hook that corrupts
    one accumulator (for the ABFT harness); production builds never set it. `gated` adds two
    flag arguments: the kernel computes only where `gate[0]` is nonzero (the tensor-core
    lane's non-finite fallback, decided on the device) and clears `gate_clear[0]` (the flag
    the next call's lane raises)."""
    if layout.panel_b and (not s.direct or layout.trans_b):
        raise ValueError("B in panels is a direct-form layout of a plain B; this is a clgemm bug")
    if layout.trans_c and not s.direct:
        raise ValueError("a transposed C is a direct-form layout; this is a clgemm bug")
    source = _render_direct(s, layout, fault_injection) if s.direct else \
        _render_tiled(s, layout, fault_injection)
    return _gate(source) if gated else source


_GATE_PARAMS = ",\n    __global const int* gate, __global int* gate_clear)\n{"
# Every work-item reads the same gate, so a work-group returns whole (no barrier is split).
_GATE_BODY = ("\n  if (get_global_id(0) == 0 && get_global_id(1) == 0) gate_clear[0] = 0;"
              "\n  if (gate[0] == 0) return;")


def _gate(source: str) -> str:
    head, sep, tail = source.partition(")\n{")
    if not sep:
        raise ValueError("kernel signature not found; this is a clgemm bug")
    return head + _GATE_PARAMS + _GATE_BODY + tail


def _render_tiled(s: Schedule, layout: Layout, fault_injection: bool) -> str:
    tm, tn = s.tile_m, s.tile_n
    lda_s, ldb_s = tm + s.local_pad, tn + s.local_pad
    buf_a = s.tile_k * lda_s
    buf_b = s.tile_k * ldb_s
    nbuf = 2 if s.double_buffer else 1

    # Where a work-item's r-th row / c-th column of outputs lies inside the tile.
    def row(r: int | str) -> str:
        return f"(tid_m + ({r}) * WGM)" if s.strided else f"(tid_m * OM + ({r}))"

    def col(c: int | str) -> str:
        return f"(tid_n + ({c}) * WGN)" if s.strided else f"(tid_n * ON + ({c}))"

    a_op = "A[(gk) * lda + (gi)]" if layout.trans_a else "A[(gi) * lda + (gk)]"
    b_op = "B[(gj) * ldb + (gk)]" if layout.trans_b else "B[(gk) * ldb + (gj)]"

    parts: list[str] = []
    emit = parts.append
    emit(f"// clgemm generated kernel: {s.key()} {_layout_text(layout)}")
    # Multiply-adds are written a * b + c with contraction allowed, not fma(): where the
    # hardware fuses, the compiler emits the same fused instruction (same bits), and where
    # fma() is a library call (PoCL measured 13x slower with it) it is not used.
    emit("#pragma OPENCL FP_CONTRACT ON")
    emit(f"#define WGM {s.wg_m}\n#define WGN {s.wg_n}\n#define OM {s.out_m}\n#define ON {s.out_n}")
    emit(f"#define TM {tm}\n#define TN {tn}\n#define TK {s.tile_k}\n#define NT {s.threads}")
    emit(f"#define LDAS {lda_s}\n#define LDBS {ldb_s}")
    emit("__attribute__((reqd_work_group_size(WGN, WGM, 1)))")
    emit(_signature(fault_injection, layout.batched))
    emit(_offsets(layout.batched))
    emit("  const int tid_n = get_local_id(0), tid_m = get_local_id(1);")
    emit("  const int tid = tid_m * WGN + tid_n;")
    emit("  const int m0 = get_group_id(1) * TM, n0 = get_group_id(0) * TN;")
    emit("  float acc[OM][ON];")
    emit("  #pragma unroll\n  for (int r = 0; r < OM; r++)\n    #pragma unroll\n    for (int c = 0; c < ON; c++) acc[r][c] = 0.0f;")
    chunk_tiles = s.acc_chunk // s.tile_k if s.acc_chunk else 0
    if chunk_tiles:
        # Blocked summation: `acc` holds the current chunk's partial sums, `tot` the total.
        emit("  float tot[OM][ON];")
        emit("  #pragma unroll\n  for (int r = 0; r < OM; r++)\n    #pragma unroll\n    for (int c = 0; c < ON; c++) tot[r][c] = 0.0f;")
    fold = (
        "  #pragma unroll\n  for (int r = 0; r < OM; r++)\n    #pragma unroll\n"
        "    for (int c = 0; c < ON; c++) { tot[r][c] += acc[r][c]; acc[r][c] = 0.0f; }"
    )
    # The chunk is acc_chunk at most and an eighth of K at most (whole tiles, one at least):
    # at small K one chunk of acc_chunk is a plain running sum, 2-3x less accurate than
    # numpy's dot-style sum of a product with B stored transposed (33 x 20 x 150 on PoCL:
    # 2.7x its error, over the exact contract's 2x); a countdown, not a modulo, in the loop.
    fold_in_loop = (f"    if (--fold_left == 0) {{\n{fold}\n      fold_left = fold_every;\n    }}"
                    if chunk_tiles else "")
    if s.stage_a:
        emit(f"  __local float A_s[{nbuf * buf_a}] __attribute__((aligned(16)));")
    if s.stage_b:
        emit(f"  __local float B_s[{nbuf * buf_b}] __attribute__((aligned(16)));")
    ops = {}
    if s.stage_a:
        ops["A"] = _load_operand("A", s, layout)
        emit(ops["A"]["decl"])
    if s.stage_b:
        ops["B"] = _load_operand("B", s, layout)
        emit(ops["B"]["decl"])
    emit("  const int ntiles = (K + TK - 1) / TK;")
    if chunk_tiles:
        emit(f"  const int fold_every = min({chunk_tiles}, max(1, (ntiles + 7) / 8));")
        emit("  int fold_left = fold_every;")

    def load_global(k0_expr: str) -> str:
        code = [f"  {{ const int k0 = {k0_expr};"]
        for op in ops.values():
            code.append(op["global"])
        code.append("  }")
        return "\n".join(code)

    def store_local(buf_expr: str) -> str:
        code = []
        for name, op in ops.items():
            size = buf_a if name == "A" else buf_b
            code.append(f"  {{ const int BUF = ({buf_expr}) * {size};")
            code.append(op["local"])
            code.append("  }")
        return "\n".join(code)

    # Inner product over one K step, reading local tiles (or global memory for an unstaged operand).
    def fragment(name: str) -> list[str]:
        """Lines loading this step's register fragment of A (`a[OM]`) or B (`b[ON]`)."""
        is_a = name == "A"
        staged = s.stage_a if is_a else s.stage_b
        count, reg = (s.out_m, "a") if is_a else (s.out_n, "b")
        tid, width = ("tid_m", "OM") if is_a else ("tid_n", "ON")
        where = row if is_a else col
        lines = []
        if staged:
            lds = "LDAS" if is_a else "LDBS"
            base = f"{name}_s + {name}BUF + kk * {lds}"
            if not s.strided and count % 4 == 0 and (lda_s if is_a else ldb_s) % 4 == 0:
                for q in range(count // 4):  # 16-byte local loads of contiguous outputs
                    lines.append(
                        f"    {{ float4 t = *((__local const float4*)({base} + {tid} * {width} + {4*q}));"
                        f" {reg}[{4*q}] = t.s0; {reg}[{4*q+1}] = t.s1; {reg}[{4*q+2}] = t.s2;"
                        f" {reg}[{4*q+3}] = t.s3; }}")
            else:
                lines += [f"    {reg}[{i}] = {name}_s[{name}BUF + kk * {lds} + {where(i)}];"
                          for i in range(count)]
        else:
            idx, limit, op = ("gi", "M", a_op) if is_a else ("gj", "N", b_op)
            origin = "m0" if is_a else "n0"
            for i in range(count):
                lines.append(f"    {{ const int {idx} = {origin} + {where(i)}; "
                             f"{reg}[{i}] = ({idx} < {limit} && gk < K) ? {op} : 0.0f; }}")
        return lines

    compute = [f"  #pragma unroll {s.unroll_k}", "  for (int kk = 0; kk < TK; kk++) {",
               "    float a[OM], b[ON];"]
    if not (s.stage_a and s.stage_b):
        compute.append("    const int gk = k0 + kk;")  # an unstaged operand reads global memory
    compute += fragment("A") + fragment("B")
    compute.append("    #pragma unroll\n    for (int r = 0; r < OM; r++)\n      #pragma unroll\n"
                   "      for (int c = 0; c < ON; c++) acc[r][c] = a[r] * b[c] + acc[r][c];")
    compute.append("  }")
    compute_code = "\n".join(compute)

    staged = bool(ops)
    if s.double_buffer and staged:
        emit("  if (ntiles > 0) {")
        emit(load_global("0"))
        emit(store_local("0"))
        emit("  }")
        emit("  barrier(CLK_LOCAL_MEM_FENCE);")
        emit("  for (int t = 0; t < ntiles; t++) {")
        emit("    const int cur = t & 1;")
        emit(f"    const int ABUF = cur * {buf_a}, BBUF = cur * {buf_b};")
        emit("    const int k0 = t * TK;")
        emit("    if (t + 1 < ntiles) {")
        emit(load_global("(t + 1) * TK"))
        emit("    }")
        emit(compute_code)
        if fold_in_loop:
            emit(fold_in_loop)
        emit("    if (t + 1 < ntiles) {")
        emit(store_local("cur ^ 1"))
        emit("    }")
        emit("    barrier(CLK_LOCAL_MEM_FENCE);")
        emit("  }")
    else:
        emit("  for (int t = 0; t < ntiles; t++) {")
        emit("    const int k0 = t * TK;")
        emit("    const int ABUF = 0, BBUF = 0;")
        if staged:
            emit("    barrier(CLK_LOCAL_MEM_FENCE);")
            emit(load_global("t * TK"))
            emit(store_local("0"))
            emit("    barrier(CLK_LOCAL_MEM_FENCE);")
        emit(compute_code)
        if fold_in_loop:
            emit(fold_in_loop)
        emit("  }")
    if chunk_tiles:
        emit(fold)
        emit("  #define RESULT tot")
    else:
        emit("  #define RESULT acc")

    if fault_injection:
        # Test-only: flip the sign and add 1 to one accumulator of the work-item that owns
        # output index `fault_at` (row-major in C), simulating a corrupted register.
        emit("  if (fault_at >= 0) {")
        emit("    #pragma unroll\n    for (int r = 0; r < OM; r++)\n      #pragma unroll\n      for (int c = 0; c < ON; c++) {")
        emit(f"        const int gi = m0 + {row('r')}, gj = n0 + {col('c')};")
        emit("        if (gi * N + gj == fault_at) RESULT[r][c] = -RESULT[r][c] + 1.0f;")
        emit("      }")
        emit("  }")

    # Epilogue: C = alpha * acc + beta * C; C is not read when beta == 0 (BLAS semantics).
    vc = s.vec_c
    emit("  #pragma unroll\n  for (int r = 0; r < OM; r++) {")
    emit(f"    const int gi = m0 + {row('r')};")
    emit("    if (gi >= M) continue;")
    emit("    __global float* crow = C + gi * ldc;")
    if vc == 1:
        emit("    #pragma unroll\n    for (int c = 0; c < ON; c++) {")
        emit(f"      const int gj = n0 + {col('c')};")
        emit("      if (gj < N) {")
        emit("        float v = alpha * RESULT[r][c];")
        emit("        if (beta != 0.0f) v = beta * crow[gj] + v;")
        emit("        crow[gj] = v;")
        emit("      }")
        emit("    }")
    else:
        vt = _vtype(vc)
        lanes = _lanes(vc)
        emit(f"    #pragma unroll\n    for (int c = 0; c < ON; c += {vc}) {{")
        emit("      const int gj = n0 + tid_n * ON + c;")
        emit(f"      if (gj + {vc} <= N) {{")
        emit(f"        {vt} v;")
        for x, lane in enumerate(lanes):
            emit(f"        v{lane} = alpha * RESULT[r][c + {x}];")
        store_ptr = f"((__global {vt}*)(crow + gj))" if layout.aligned_c else None
        emit("        if (beta != 0.0f) {")
        old = f"*{store_ptr}" if store_ptr else f"vload{vc}(0, crow + gj)"
        emit(f"          {vt} o = {old};")
        emit("          v = (" + vt + ")(beta) * o + v;")
        emit("        }")
        emit(f"        {('*' + store_ptr + ' = v;') if store_ptr else f'vstore{vc}(v, 0, crow + gj);'}")
        emit("      } else {")
        emit(f"        #pragma unroll\n        for (int x = 0; x < {vc}; x++) {{")
        emit("          if (gj + x < N) {")
        emit("            float v = alpha * RESULT[r][c + x];")
        emit("            if (beta != 0.0f) v = beta * crow[gj + x] + v;")
        emit("            crow[gj + x] = v;")
        emit("          }")
        emit("        }")
        emit("      }")
        emit("    }")
    emit("  }")
    emit("}")
    return "\n".join(parts) + "\n"


def _vload(width: int, ptr: str) -> str:
    """An unaligned vector load written as consecutive scalar loads, which the compiler merges
    into one vector load. Not vloadN: PoCL does not inline it, and a call in the K loop
    spills every accumulator (all vector registers are caller-saved); vload16 even aborts
    PoCL's LLVM 14 on a CPU without AVX-512."""
    return f"({_vtype(width)})(" + ", ".join(f"({ptr})[{i}]" for i in range(width)) + ")"


def _render_direct(s: Schedule, layout: Layout, fault_injection: bool) -> str:
    """The direct (CPU-shaped) form: no local memory, no barriers. A work-item owns `out_m`
    rows x `out_n` columns of C, held as one float`out_n` vector per row; each K step loads
    one vector row of op(B) and broadcasts one element of op(A) per row. Inside the matrix
    there are no bounds checks; a border work-item takes the same loop with clamped indices
    (reads stay inside the operands, the extra results are not stored). Accumulation is
    blocked over K exactly as in the work-group form: `acc_chunk` elements into a partial,
    partials into the total."""
    om, on = s.out_m, s.out_n
    vt = _vtype(on)
    lanes = [""] if on == 1 else [f".s{i:x}" for i in range(on)]

    def bcast(x: str) -> str:
        return x if on == 1 else f"({vt})({x})"

    parts: list[str] = []
    emit = parts.append
    emit(f"// clgemm generated kernel (direct form): {s.key()} {_layout_text(layout)}")
    emit("#pragma OPENCL FP_CONTRACT ON")
    emit(f"#define WGM {s.wg_m}\n#define WGN {s.wg_n}\n#define OM {om}\n#define ON {on}")
    emit(f"#define TM {s.tile_m}\n#define TN {s.tile_n}\n#define TK {s.tile_k}\n#define ACC {s.acc_chunk}")
    emit("__attribute__((reqd_work_group_size(WGN, WGM, 1)))")
    emit(_signature(fault_injection, layout.batched))
    emit(_offsets(layout.batched))
    # Consecutive work-items walk M: PoCL runs a group's work-items as a loop with dimension
    # 0 innermost, so they share one K x out_n panel of B (cache resident) while A rows stream.
    emit("  const int lid = get_local_id(1) * WGN + get_local_id(0);")
    emit("  const int tid_m = lid % WGM, tid_n = lid / WGM;")
    emit("  const int gm0 = get_group_id(1) * TM + tid_m * OM;")
    emit("  const int gn0 = get_group_id(0) * TN + tid_n * ON;")
    emit("  if (gm0 >= M || gn0 >= N) return;")
    for r in range(om):
        emit(f"  {vt} t{r} = 0.0f;")

    def kloop(edge: bool) -> list[str]:
        """The blocked K loop; `edge` clamps rows and columns to the matrix."""
        out = []
        for r in range(om):
            row = f"min(gm0 + {r}, M - 1)" if edge else f"gm0 + {r}"
            out.append(f"    __global const float* a{r} = A + " + (f"({row});" if layout.trans_a else f"({row}) * lda;"))
        if layout.panel_b:
            # the work-item's panel: contiguous K x ON, zeros past N (no column clamp)
            out.append("    __global const float* brow = B + (long)(gn0 / ON) * ldb;")
        elif layout.trans_b or edge:
            for c in range(on):
                col = f"min(gn0 + {c}, N - 1)" if edge else f"gn0 + {c}"
                out.append(f"    __global const float* b{c} = B + " + (f"({col}) * ldb;" if layout.trans_b else f"({col});"))
        else:
            out.append("    __global const float* brow = B + gn0;")

        def step(k: str) -> list[str]:
            if layout.panel_b:
                elems = None
            elif layout.trans_b:
                elems = [f"b{c}[{k}]" for c in range(on)]
            elif edge:
                elems = [f"b{c}[({k}) * ldb]" for c in range(on)]
            else:
                elems = None
            row = "ON" if layout.panel_b else "ldb"  # floats between B's rows
            if elems is None:
                load = f"brow[({k}) * {row}]" if on == 1 else _vload(on, f"brow + ({k}) * {row}")
            else:
                load = elems[0] if on == 1 else f"({vt})(" + ", ".join(elems) + ")"
            lines = [f"        {{ const {vt} b = {load};"]
            for r in range(om):
                a = f"a{r}[({k}) * lda]" if layout.trans_a else f"a{r}[{k}]"
                lines.append(f"          c{r} = {bcast(a)} * b + c{r};")
            lines.append("        }")
            return lines

        out.append("    for (int kc = 0; kc < K; kc += chunk) {")
        out.append("      const int kend = min(K, kc + chunk);")
        for r in range(om):
            out.append(f"      {vt} c{r} = 0.0f;")
        out.append("      int k = kc;")
        out.append("      for (; k + TK <= kend; k += TK) {")
        out.append(f"        #pragma unroll {s.unroll_k}")
        out.append("        for (int kk = 0; kk < TK; kk++)")
        out += step("k + kk")
        out.append("      }")
        out.append("      for (; k < kend; k++)")
        out += step("k")
        for r in range(om):
            out.append(f"      t{r} += c{r};")
        out.append("    }")
        return out

    # the chunk: ACC at most, an eighth of K at most (whole TK steps), as in the tiled form
    emit("  const int chunk = min(ACC, max(TK, (K + 8 * TK - 1) / (8 * TK) * TK));")
    emit("  const int inside = gm0 + OM <= M && gn0 + ON <= N;")
    emit("  if (inside) {")
    parts.extend(kloop(edge=False))
    emit("  } else {")
    parts.extend(kloop(edge=True))
    emit("  }")

    if fault_injection:
        emit("  if (fault_at >= 0) {")
        for r in range(om):
            for c, lane in enumerate(lanes):
                emit(f"    if ((gm0 + {r}) * N + gn0 + {c} == fault_at && gm0 + {r} < M && gn0 + {c} < N)"
                     f" t{r}{lane} = -t{r}{lane} + 1.0f;")
        emit("  }")

    # Epilogue: C = alpha * total + beta * C; C is not read when beta == 0 (BLAS semantics).
    if layout.trans_c:
        parts.extend(_store_transposed(om, lanes))
        return "\n".join(parts) + "\n"
    emit("  if (inside) {")
    for r in range(om):
        emit(f"    {{ __global float* crow = C + (gm0 + {r}) * ldc + gn0;")
        emit(f"      {vt} v = alpha * t{r};")
        if on == 1:
            emit("      if (beta != 0.0f) v = beta * crow[0] + v;")
            emit("      crow[0] = v; }")
        else:
            emit(f"      if (beta != 0.0f) v = ({vt})(beta) * {_vload(on, 'crow')} + v;")
            emit("      " + " ".join(f"crow[{c}] = v{lane};" for c, lane in enumerate(lanes)) + " }")
    emit("  } else {")
    for r in range(om):
        emit(f"    if (gm0 + {r} < M) {{ __global float* crow = C + (gm0 + {r}) * ldc + gn0;")
        for c, lane in enumerate(lanes):
            emit(f"      if (gn0 + {c} < N) {{ float v = alpha * t{r}{lane};"
                 f" if (beta != 0.0f) v = beta * crow[{c}] + v; crow[{c}] = v; }}")
        emit("    }")
    emit("  }")
    emit("}")
    return "\n".join(parts) + "\n"


def _store_transposed(om: int, lanes: list[str]) -> list[str]:
    """The direct form's epilogue into a C stored transposed: output (gm0 + r, gn0 + c) to
    C[(gn0 + c) * ldc + gm0 + r], each of the work-item's out_n columns a run of out_m floats
    of one stored row (beside its neighbours' runs, which the same group writes next). A
    border work-item checks each column and row against N and M."""
    def columns(edge: bool) -> list[str]:
        out = []
        for c, lane in enumerate(lanes):
            head = f"if (gn0 + {c} < N) " if edge else ""
            out.append(f"    {head}{{ __global float* ccol = C + (long)(gn0 + {c}) * ldc + gm0;")
            for r in range(om):
                check = f"if (gm0 + {r} < M) " if edge else ""
                out.append(f"      {check}{{ float v = alpha * t{r}{lane};"
                           f" if (beta != 0.0f) v = beta * ccol[{r}] + v; ccol[{r}] = v; }}")
            out.append("    }")
        return out

    return ["  if (inside) {", *columns(False), "  } else {", *columns(True), "  }", "}"]


def _layout_text(layout: Layout) -> str:
    """The layout as a kernel's first line names it: `batched`, `panel_b` and `trans_c` only
    where set, so that other kernels' sources (and their cache keys) stay what earlier
    releases made."""
    text = repr(layout)
    for later in (", batched=False", ", panel_b=False", ", trans_c=False"):
        text = text.replace(later, "")
    return text


def _signature(fault_injection: bool, batched: bool = False) -> str:
    """The kernel's parameter list, shared by both forms (launchers pass the same arguments).
    A batched kernel takes each operand's batch stride (elements; 0 broadcasts it)."""
    return (f"__kernel void {KERNEL_NAME}(const int M, const int N, const int K,\n"
            "    const float alpha, const float beta,\n"
            "    __global const float* restrict A, const int lda, const int a_off,\n"
            "    __global const float* restrict B, const int ldb, const int b_off,\n"
            "    __global float* C, const int ldc, const int c_off"
            + (",\n    const long a_bs, const long b_bs, const long c_bs" if batched else "")
            + (", const int fault_at" if fault_injection else "") + ")\n{")


def _offsets(batched: bool) -> str:
    """Each operand's start: its offset, and in a batched kernel the batch index (the
    launch's third dimension) times its batch stride, in 64 bits (a batch may span more
    than 2**31 elements)."""
    if not batched:
        return "  A += a_off; B += b_off; C += c_off;"
    return ("  { const long bi = get_group_id(2);\n"
            "    A += a_off + bi * a_bs; B += b_off + bi * b_bs; C += c_off + bi * c_bs; }")


def source_lines(source: str) -> int:
    """Lines of kernel code (KPI-5's code cost): non-blank, non-comment lines."""
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("//"))
