"""Products with A stored transposed (and B either way) through the public call, device arrays, output allocated, 8 calls (2 warm-up dropped), numpy beside in the same process: argv TREE. One line per product: tree, m n k trans_a trans_b, min and median ms, numpy ms."""
import numpy as np, clgemm, time, sys
from clgemm.runtime import get_runtime
Q=get_runtime().user_queue
rng=np.random.default_rng(0)
for (m,n,k,ta,tb) in [(2304,768,1024,True,False),(3072,768,1024,True,False),(768,3072,1024,True,False),(512,4096,1024,True,True),(2048,512,2048,True,True)]:
    A=rng.standard_normal((k,m) if ta else (m,k)).astype(np.float32); B=rng.standard_normal((n,k) if tb else (k,n)).astype(np.float32)
    a=clgemm.to_device(A); bb=clgemm.to_device(B)
    ts=[]
    for _ in range(8):
        t=time.perf_counter(); clgemm.matmul(a,bb,trans_a=ta,trans_b=tb); Q.finish(); ts.append(time.perf_counter()-t)
    ts=sorted(ts[2:])
    An=A.T if ta else A; Bn=B.T if tb else B
    tn=[]
    for _ in range(3):
        t=time.perf_counter(); An@Bn; tn.append(time.perf_counter()-t)
    print(sys.argv[1], m,n,k,ta,tb, "min", round(ts[0]*1e3,2), "median", round(ts[len(ts)//2]*1e3,2), "numpy", round(min(tn)*1e3,2), flush=True)
