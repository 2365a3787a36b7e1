"""Batches of attention-like products (BERT attn-bwd shapes), 25 calls (3 dropped), min and median ms, for the clgemm first on sys.path: argv TREE."""
import numpy as np, clgemm, time, sys
from clgemm.runtime import get_runtime
Q=get_runtime().user_queue
rng=np.random.default_rng(0)
for (b,m,n,k,ta,tb) in [(24,512,64,512,True,False),(24,512,512,64,False,True),(24,512,64,512,False,False)]:
    A=rng.standard_normal((b,k,m) if ta else (b,m,k)).astype(np.float32); B=rng.standard_normal((b,n,k) if tb else (b,k,n)).astype(np.float32)
    a=clgemm.to_device(A); bb=clgemm.to_device(B)
    ts=[]
    for _ in range(25):
        t=time.perf_counter(); clgemm.matmul(a,bb,trans_a=ta,trans_b=tb); Q.finish(); ts.append(time.perf_counter()-t)
    ts=sorted(ts[3:])
    print(sys.argv[1], b,m,n,k,ta,tb, "min", round(ts[0]*1e3,2), "median", round(ts[len(ts)//2]*1e3,2))
