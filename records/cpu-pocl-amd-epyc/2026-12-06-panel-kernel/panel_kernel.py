"""The direct kernel alone (no copies timed), B read as plain rows (ldb = N + 16) against B in panels of out_n columns (the layout lanes/pack.py writes) and, as a probe, A in panels too: argv SCHEDULE M N K (M a multiple of the tile rows). Kernel time by event profiling, best of 5; the maximum error against float64 printed beside."""
import numpy as np, pyopencl as cl, sys, time
from clgemm.kernels.gemm import render, Layout
from clgemm import Schedule
key = sys.argv[1] if len(sys.argv)>1 else 'wm16-wn8-om6-on16-tk32-va1-vb1-vc1-sa0-sb0-uk2-db0-st0-lp0-ac128-dr1'
s=Schedule.from_key(key)
src=render(s, Layout(False,False,True,True,True))
on=s.out_n
import re
asrc=None
psrc=src.replace("brow = B + gn0;", f"brow = B + (gn0/{on})*(K*{on});").replace("* ldb)[", f"* {on})[")
om=s.out_m
asrc=psrc
for r in range(om):
    asrc=asrc.replace(f"a{r} = A + (gm0 + {r}) * lda;", f"a{r} = A + (gm0/{om})*(K*{om}) + {r};")
asrc=re.sub(r"a(\d+)\[k \+ kk\]", lambda mm: f"a{mm.group(1)}[(k + kk)*{om}]", asrc)
asrc=re.sub(r"a(\d+)\[k\]", lambda mm: f"a{mm.group(1)}[(k)*{om}]", asrc)
ctx=cl.create_some_context(False); q=cl.CommandQueue(ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
kp=cl.Program(ctx,src).build().clgemm_sgemm; kq=cl.Program(ctx,psrc).build().clgemm_sgemm; ka=cl.Program(ctx,asrc).build().clgemm_sgemm
M,N,K=int(sys.argv[2]),int(sys.argv[3]),int(sys.argv[4])
rng=np.random.default_rng(0)
A=rng.standard_normal((M,K)).astype(np.float32); B=rng.standard_normal((K,N)).astype(np.float32)
ldb=N+16
Bpad=np.zeros((K,ldb),np.float32); Bpad[:,:N]=B
Bpan=np.ascontiguousarray(B.reshape(K,N//on,on).transpose(1,0,2))
mf=cl.mem_flags
a=cl.Buffer(ctx,mf.COPY_HOST_PTR,hostbuf=A); bp=cl.Buffer(ctx,mf.COPY_HOST_PTR,hostbuf=Bpad); bq=cl.Buffer(ctx,mf.COPY_HOST_PTR,hostbuf=Bpan)
c=cl.Buffer(ctx,mf.READ_WRITE,4*M*N)
Apan=np.ascontiguousarray(A[:M//om*om].reshape(M//om,om,K).transpose(0,2,1)); ap=cl.Buffer(ctx,mf.COPY_HOST_PTR,hostbuf=Apan)
gs=(-(-N//s.tile_n)*s.wg_n, -(-M//s.tile_m)*s.wg_m); ls=(s.wg_n,s.wg_m)
def run(k,b,ld,aa=None):
    global a
    a0=a
    if aa is not None: a=aa
    ts=[]
    for _ in range(5):
        e=k(q,gs,ls,np.int32(M),np.int32(N),np.int32(K),np.float32(1),np.float32(0),a,np.int32(K),np.int32(0),b,np.int32(ld),np.int32(0),c,np.int32(N),np.int32(0)); e.wait()
        ts.append((e.profile.end-e.profile.start)*1e-9)
    C=np.empty((M,N),np.float32); cl.enqueue_copy(q,C,c)
    ref=A.astype(np.float64)@B
    a=a0
    return min(ts), np.abs(C[:M - M% s.tile_m]-ref[:M - M%s.tile_m]).max()
for name,k,b,ld,aa in [("plain",kp,bp,ldb,None),("panel",kq,bq,ldb,None),("panelAB",ka,bq,ldb,ap)]*2:
    t,err=run(k,b,ld,aa); print(name, round(t*1e3,2), "ms", round(2*M*N*K/t/1e9,1), "GFLOPS err", err, flush=True)
