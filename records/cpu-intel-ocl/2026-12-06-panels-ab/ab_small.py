"""Five products through the public call (device arrays, output allocated, best of 4) beside numpy in the same process, for the clgemm first on sys.path: argv TREE. One line per product: tree, (m, n, k, trans_b), ms, numpy ms, ratio."""
import json, sys, time, numpy as np, clgemm
from clgemm.runtime import get_runtime
rt=get_runtime(); q=rt.user_queue
print(rt.device.name, file=sys.stderr)
SHAPES=[(512,4096,4096,True),(1024,768,768,True),(64,4096,1024,True),(1400,1400,1400,False),(2048,1024,4096,False)]
rng=np.random.default_rng(0)
def best(f,sync,reps=4):
    f(); sync(); ts=[]
    for _ in range(reps):
        t=time.perf_counter(); f(); sync(); ts.append(time.perf_counter()-t)
    return min(ts)
for m,n,k,tb in SHAPES:
    A=rng.standard_normal((m,k)).astype(np.float32); W=rng.standard_normal((n,k) if tb else (k,n)).astype(np.float32)
    a,w=clgemm.to_device(A),clgemm.to_device(W)
    o=best(lambda: clgemm.matmul(a,w,trans_b=tb), q.finish); r=best(lambda: A@(W.T if tb else W), lambda: None, 3)
    print(sys.argv[1], (m,n,k,tb), round(o*1e3,1), round(r*1e3,1), round(o/r,2), flush=True)
