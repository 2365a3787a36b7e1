"""One product (device arrays, output allocated by the call) 20 times, each call's kernel events: argv TREE MxNxK nt|nn. Its kernel time on this host is bimodal (both cores or one)."""
import numpy as np, clgemm, time, sys
from clgemm.runtime import get_runtime
Q=get_runtime().user_queue
m,n,k=[int(x) for x in sys.argv[2].split("x")]
tb=sys.argv[3]=="nt"
rng=np.random.default_rng(0)
A=rng.standard_normal((m,k)).astype(np.float32); W=rng.standard_normal((n,k) if tb else (k,n)).astype(np.float32)
a=clgemm.to_device(A); w=clgemm.to_device(W); c=clgemm.to_device(np.ones((m,n),np.float32))
out=[]; walls=[]
for _ in range(20):
    t=time.perf_counter(); _,info=clgemm.matmul(a,w,trans_b=tb,return_info=True); Q.finish(); walls.append(time.perf_counter()-t)
    out.append([round((e.profile.end-e.profile.start)*1e-6,1) for e in info.events])
print(sys.argv[1], info.schedule[:20], "wall med", round(np.median(walls)*1e3,1), "min", round(min(walls)*1e3,1), out[-6:])
