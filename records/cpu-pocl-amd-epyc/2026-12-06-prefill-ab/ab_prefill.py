import numpy as np, clgemm, time, sys, json
from clgemm.runtime import get_runtime
Q=get_runtime().user_queue
from clgemm import Schedule
rng=np.random.default_rng(0)
shapes=[(512,4096,4096),(512,11008,4096),(512,4096,11008),(512,32000,4096)]
cands={
 "table m3n5k5": "wm16-wn8-om6-on16-tk32-va1-vb1-vc1-sa0-sb0-uk2-db0-st0-lp0-ac128-dr1",
 "m4n4k4": "wm4-wn16-om6-on16-tk16-va1-vb1-vc1-sa0-sb0-uk4-db0-st0-lp0-ac64-dr1",
 "m3n3k5": "wm32-wn4-om6-on16-tk8-va1-vb1-vc1-sa0-sb0-uk2-db0-st0-lp0-ac256-dr1",
 "small": "wm4-wn8-om6-on16-tk16-va1-vb1-vc1-sa0-sb0-uk2-db0-st0-lp0-ac128-dr1",
}
extra=sys.argv[1:]
for i,k in enumerate(extra): cands[f"x{i}"]=k
res={}
for (m,n,k) in shapes:
    A=rng.standard_normal((m,k)).astype(np.float32); W=rng.standard_normal((n,k)).astype(np.float32)
    a=clgemm.to_device(A); w=clgemm.to_device(W)
    row={}
    for name,key in cands.items():
        s=Schedule.from_key(key)
        clgemm.matmul(a,w,trans_b=True,schedule=s); Q.finish()
        ts=[]
        for _ in range(3):
            t=time.perf_counter(); clgemm.matmul(a,w,trans_b=True,schedule=s); Q.finish(); ts.append(time.perf_counter()-t)
        row[name]=min(ts)
    t=time.perf_counter(); A@W.T; row['numpy']=time.perf_counter()-t
    t=time.perf_counter(); A@W.T; row['numpy']=min(row['numpy'],time.perf_counter()-t)
    res[f"{m}x{n}x{k}"]=row
    print(m,n,k,{kk:round(v*1000,1) for kk,v in row.items()}, flush=True)
json.dump(res,open('/tmp/ab_prefill.json','w'),indent=1)
