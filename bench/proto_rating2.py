#!/usr/bin/env python3
# bench/proto_rating2.py - a prototype, not driftrec code: online, single-pass,
# prequential (predict, then learn, event by event in timestamp order) rating
# predictors on ml-latest-small, measured against the replay's `bias` arm
# (mu running mean, b_u + b_i by SGD step 0.1 / L2 0.1; mae 0.6585 rmse 0.8617).
# Variants: per-entity step schedules (count-decayed / AdaGrad), separate user
# and item steps, a session offset (EMA of the user's recent residuals, reset
# after a time gap), biased MF / SVD++ factors, the residual item-kNN term of
# bench/proto_rating_knn.py, and an online (RLS) blend of several of them.
#   python3 bench/proto_rating2.py [N] 'dict(...)' ['dict(...)' ...]
# N = number of events (0 = all 100,836); each dict is one setting (keyword
# arguments of run()); ratings file from $RATINGS or the default path.
import csv, math, os, random, sys, time
from collections import defaultdict, deque
PATH=os.environ.get('RATINGS','../shared/data/ml-latest-small/ratings.csv')
rows=list(csv.reader(open(PATH)))[1:]
rows=[(int(u),int(i),float(r),int(t)) for u,i,r,t in rows]
rows.sort(key=lambda x:x[3])
umap={}; imap={}
rows=[(umap.setdefault(u,len(umap)),imap.setdefault(i,len(imap)),r,t) for u,i,r,t in rows]
NU=len(umap); NI=len(imap)

def run(N=0, lr=0.1, reg=0.1, lru=None, lri=None, regu=None, regi=None,
        sched=None, a0=1.0, k0=1.0, pw=1.0, lrmin=0.0,
        sess=0.0, sgap=3600, sdecay=0.0,
        dim=0, flr=0.01, freg=0.02, finit=0.1, pp=False, plr=None,
        knn=0.0, W=30, L=30, lam=1.0, mu0=3.0, seed=1):
    lru=lr if lru is None else lru; lri=lr if lri is None else lri
    regu=reg if regu is None else regu; regi=reg if regi is None else regi
    ev=rows[:N] if N else rows
    bu=[0.0]*NU; bi=[0.0]*NI; nu=[0]*NU; ni=[0]*NI
    gu=[0.0]*NU; gi=[0.0]*NI   # adagrad accumulators
    so=[0.0]*NU; lt=[0]*NU     # session offset, last time
    rnd=random.Random(seed)
    if dim:
        P=[[rnd.gauss(0,finit) for _ in range(dim)] for _ in range(NU)]
        Q=[[rnd.gauss(0,finit) for _ in range(dim)] for _ in range(NI)]
        Y=[[0.0]*dim for _ in range(NI)] if pp else None
        ysum=[[0.0]*dim for _ in range(NU)] if pp else None
        hist=[[] for _ in range(NU)]
    plr_=flr if plr is None else plr
    if knn:
        C=[defaultdict(float) for _ in range(NI)]; recent=[deque() for _ in range(NU)]
    s=0.0; n=0; ae=0.0; se=0.0
    for u,i,r,t in ev:
        mu=s/n if n else mu0
        if sess and t-lt[u]>sgap: so[u]=0.0
        base=mu+bu[u]+bi[i]
        p=base+so[u]
        if dim:
            pu=P[u]; qi=Q[i]
            if pp:
                nh=len(hist[u]); z=1.0/math.sqrt(nh) if nh else 0.0
                ys=ysum[u]; pv=[pu[f]+z*ys[f] for f in range(dim)]
            else: pv=pu
            dot=sum(pv[f]*qi[f] for f in range(dim)); p+=dot
        else: dot=0.0
        if knn:
            num=0.0; den=lam; ci=C[i]
            for (j,rj) in recent[u]:
                c=ci.get(j)
                if c:
                    sij=c/math.sqrt(ni[i]*ni[j]); num+=sij*(rj-(mu+bu[u]+bi[j])); den+=sij
            p+=knn*num/den
        pc=min(max(p,0.5),5.0); d=pc-r; ae+=abs(d); se+=d*d
        # learn
        e=r-(base+dot) # bias/factor error excludes session and knn terms
        if sched=='count':
            su=max(lrmin,a0/(k0+nu[u])**pw); si=max(lrmin,a0/(k0+ni[i])**pw)
            su*=lru/lr; si*=lri/lr
        elif sched=='ada':
            gu_=e-regu*bu[u]; gi_=e-regi*bi[i]
            gu[u]+=gu_*gu_; gi[i]+=gi_*gi_
            su=lru/math.sqrt(k0+gu[u]); si=lri/math.sqrt(k0+gi[i])
        else: su=lru; si=lri
        if sess:
            es=r-base-dot-so[u]
            so[u]+=sess*es
        bu[u]+=su*(e-regu*bu[u]); bi[i]+=si*(e-regi*bi[i])
        if dim:
            for f in range(dim):
                pf=pv[f]; qf=qi[f]
                pu[f]+=flr*(e*qf-freg*pu[f]); qi[f]+=flr*(e*pf-freg*qf)
            if pp:
                if nh:
                    g=plr_*e*z
                    for j in hist[u]:
                        yj=Y[j]
                        for f in range(dim):
                            d_=g*qi[f]-plr_*freg*yj[f]; yj[f]+=d_; ys[f]+=d_
                hist[u].append(i); yi=Y[i]
                for f in range(dim): ys[f]+=yi[f]
        if knn:
            for (j,rj) in list(recent[u])[-W:]:
                if j!=i: C[i][j]+=1; C[j][i]+=1
            recent[u].append((i,r))
            if len(recent[u])>L: recent[u].popleft()
        nu[u]+=1; ni[i]+=1; lt[u]=t
        s+=r; n+=1
    return ae/len(ev),(se/len(ev))**.5

if __name__=='__main__':
    N=int(sys.argv[1]) if len(sys.argv)>1 else 0
    for a in sys.argv[2:] or ['dict()']:
        kw=eval(a); t0=time.time(); m,r_=run(N=N,**kw)
        print('%-60s mae %.4f rmse %.4f  (%.3fx %.3fx) %.0fs'%(a,m,r_,m/0.6585,r_/0.8617,time.time()-t0),flush=True)
