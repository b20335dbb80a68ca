#!/usr/bin/env python3
# bench/proto_rating3.py - a prototype, not driftrec code: an online,
# prequential (predict, then learn, event by event in timestamp order) feature
# blend for rating prediction on ml-latest-small. `gen` computes per event,
# from past events only, a set of features (running mean, the replay's SGD
# bias arm, shrunken item / user residual means, EMAs of the user's residuals
# at several rates, a session offset, co-occurrence item-kNN terms (as in
# bench/proto_rating_knn.py) over the user's last 10/30/200 ratings, a
# residual-correlation item-kNN term, Koren-style learned w_ij, an item EMA,
# an online MF dot, per-user x genre residual means from movies.csv) and
# writes them with the true rating. `blend` then predicts each event as
# base + a recursive-least-squares linear blend of chosen features
# (forgetting LAM), optionally plus a second, per-user RLS stage (PERUSER=1,
# ridge prior DELTA2, random-walk noise KQ2) over the features in S2, scores
# (clipped to [0.5,5]) and only then updates. It prints mae/rmse, their
# ratios to the bias arm (0.6585 / 0.8617) and the same per half of the file.
#   python3 bench/proto_rating3.py gen [N]        # -> $FEAT (/tmp/pr/feat.txt)
#   python3 bench/proto_rating3.py blend SPEC...  # SPEC = comma list of names
# (gen ~1 min, ~1.8 GB; each blend ~10 s). Best settings found:
#   GWLR=0.1 KW=100 KL=200 PW=60 PSH=20 FEAT=/tmp/pr/f6.txt python3 bench/proto_rating3.py gen
#   B=base,mu,ibar5,ibar20,ubar5,ubar20,ema0.5,ema0.3,ema0.2,ema0.1,ema0.05,ema0.02,sess,knn,mf,knn10,knn100,knnr,gw,iema,pknn,pknnden,ustd,istd
#   FEAT=/tmp/pr/f6.txt LAM=0.9998 PERUSER=1 LAM2=1 DELTA2=0.02 KQ2=1e-4 \
#     S2=ema0.5,knn100,pknn,ibar5,ema0.05 python3 bench/proto_rating3.py blend $B           # ratings only: 0.6322 / 0.8350
#   (same env, S2=...,ug,uge)  python3 bench/proto_rating3.py blend $B,ug,uge,ug20          # + genres:     0.6246 / 0.8254
import csv, math, os, random, sys, time
from collections import defaultdict, deque
PATH=os.environ.get('RATINGS','../shared/data/ml-latest-small/ratings.csv')
FEAT=os.environ.get('FEAT','/tmp/pr/feat.txt')

def load():
    rows=list(csv.reader(open(PATH)))[1:]
    rows=[(int(u),int(i),float(r),int(t)) for u,i,r,t in rows]
    rows.sort(key=lambda x:x[3])
    umap={}; imap={}
    ev=[(umap.setdefault(u,len(umap)),imap.setdefault(i,len(imap)),r,t) for u,i,r,t in rows]
    # genres from movies.csv next to ratings.csv (driftrec's catalog embeddings)
    gmap={}; G={}
    for row in list(csv.reader(open(os.path.join(os.path.dirname(PATH),'movies.csv'))))[1:]:
        mid=int(row[0])
        if mid in imap: G[imap[mid]]=[gmap.setdefault(g,len(gmap)) for g in row[2].split('|')]
    load.genres=[G.get(i,[]) for i in range(len(imap))]; load.ng=len(gmap)
    return ev,len(umap),len(imap)

EMAS=[0.5,0.3,0.2,0.1,0.05,0.02]
GWLR=float(os.environ.get("GWLR","0.005")); GWREG=float(os.environ.get("GWREG","0.01")); KW=int(os.environ.get("KW","30")); KL=int(os.environ.get("KL","100")); PW=int(os.environ.get("PW","30")); PSH=float(os.environ.get("PSH","10")); PLAM=float(os.environ.get("PLAM","1"))
def gen(N=0, knnW=KW, knnL=KL, dim=16, flr=0.01, freg=0.02):
    rows,NU,NI=load(); ev=rows[:N] if N else rows
    bu=[0.0]*NU; bi=[0.0]*NI           # replay bias arm (0.1 / 0.1)
    isum=[0.0]*NI; ni=[0]*NI; usum=[0.0]*NU; nu=[0]*NU
    ema=[[0.0]*len(EMAS) for _ in range(NU)]
    lt=[0]*NU; sres=[0.0]*NU; sn=[0]*NU
    rnd=random.Random(1)
    P=[[rnd.gauss(0,0.1) for _ in range(dim)] for _ in range(NU)]
    Q=[[rnd.gauss(0,0.1) for _ in range(dim)] for _ in range(NI)]
    C=[defaultdict(float) for _ in range(NI)]; recent=[deque() for _ in range(NU)]
    s=0.0; n=0; out=open(FEAT,'w')
    names=['r','mu','base','ibar5','ibar20','ubar5','ubar20']+['ema%g'%a for a in EMAS]+['sess','lnu','lni','knn','knnden','mf','newu','newi','gap','knn10','knn100','knnr','gw','iema','pknn','pknnden','ustd','istd','ug','uge','ug20']
    GI=load.genres; NG=load.ng; UGs=[[0.0]*NG for _ in range(NU)]; UGn=[[0]*NG for _ in range(NU)]; UGe=[[0.0]*NG for _ in range(NU)]
    S=[dict() for _ in range(NI)]; usq=[0.0]*NU; isq=[0.0]*NI
    Wt=[dict() for _ in range(NI)]; iema=[0.0]*NI
    out.write(' '.join(names)+'\n')
    for u,i,r,t in ev:
        mu=s/n if n else 3.0
        base=mu+bu[u]+bi[i]
        ib5=isum[i]/(5+ni[i]); ib20=isum[i]/(20+ni[i])
        # user residual vs item-adjusted: keep sums of (r - mu_t - ib5_t)
        ub5=usum[u]/(5+nu[u]); ub20=usum[u]/(20+nu[u])
        gap=t-lt[u] if nu[u] else 10**9
        if gap>3600: sres[u]=0.0; sn[u]=0
        sess=sres[u]/(2+sn[u])
        num=0.0; den=1.0; ci=C[i]
        for (j,rj,bj,ej) in list(recent[u])[-30:]:
            c=ci.get(j)
            if c:
                sij=c/math.sqrt(ni[i]*ni[j]); num+=sij*(rj-bj); den+=sij
        knn=num/den
        # L=10 / L=100 variants, and a recency-weighted one (weight 0.95^age)
        rec=list(recent[u]); nr=len(rec)
        n10=0.0; d10=1.0; n100=0.0; d100=1.0; nrr=0.0; drr=1.0; gw=0.0
        wi=Wt[i]
        for a,(j,rj,bj,ej) in enumerate(rec):
            c=ci.get(j)
            if c:
                sij=c/math.sqrt(ni[i]*ni[j]); n100+=sij*(rj-bj); d100+=sij
                if a>=nr-10: n10+=sij*(rj-bj); d10+=sij
                wr=sij*0.95**(nr-1-a); nrr+=wr*(rj-bj); drr+=wr
            wv=wi.get(j)
            if wv: gw+=wv*(rj-bj)
        zz=1.0/math.sqrt(nr) if nr else 0.0
        pn=0.0; pd=PLAM; si_=S[i]
        for (j,rj,bj,ej) in rec:
            st=si_.get(j)
            if st:
                sim=st[0]/math.sqrt(st[1]*st[2]+1e-9)*st[3]/(st[3]+PSH)
                pn+=sim*(rj-bj); pd+=abs(sim)
        gw*=zz
        gs=GI[i]; ug=uge=ug20=0.0
        if gs:
            us=UGs[u]; un=UGn[u]; ue=UGe[u]
            for g in gs: ug+=us[g]/(5+un[g]); ug20+=us[g]/(20+un[g]); uge+=ue[g]
            ug/=len(gs); ug20/=len(gs); uge/=len(gs)
        pu=P[u]; qi=Q[i]; dot=sum(pu[f]*qi[f] for f in range(dim))
        f=[r,mu,base,ib5,ib20,ub5,ub20]+ema[u]+[sess,math.log1p(nu[u]),math.log1p(ni[i]),knn,den-1,dot,
           1.0 if nu[u]==0 else 0.0, 1.0 if ni[i]==0 else 0.0, min(math.log1p(gap),20), n10/d10, n100/d100, nrr/drr, gw, iema[i], pn/pd, pd-PLAM, math.sqrt(usq[u]/(nu[u]+3)+0.5), math.sqrt(isq[i]/(ni[i]+3)+0.5), ug, uge, ug20]
        out.write(' '.join('%.5g'%x for x in f)+'\n')
        # learn
        e=r-base
        bu[u]+=0.1*(e-0.1*bu[u]); bi[i]+=0.1*(e-0.1*bi[i])
        ri=r-mu-ib5  # residual after item
        for k,a in enumerate(EMAS): ema[u][k]+=a*(ri-ema[u][k])
        usum[u]+=ri; nu[u]+=1
        isum[i]+=r-mu-ub5; ni[i]+=1
        sres[u]+=ri; sn[u]+=1
        em=r-mu-bu[u]-bi[i]-dot
        for k in range(dim):
            pf=pu[k]; qf=qi[k]; pu[k]+=flr*(em*qf-freg*pf); qi[k]+=flr*(em*pf-freg*qf)
        eg=r-base-gw; g=GWLR*eg*zz
        for (j,rj,bj,ej) in rec:
            wv=wi.get(j,0.0); wi[j]=wv+g*(rj-bj)-GWLR*GWREG*wv
        iema[i]+=0.05*(r-base-iema[i])
        for (j,rj,bj,ej) in list(recent[u])[-knnW:]:
            if j!=i: C[i][j]+=1; C[j][i]+=1
        for (j,rj,bj,ej) in rec[-PW:]:
            if j!=i:
                st=si_.get(j)
                if st is None: st=[0.0,0.0,0.0,0]; si_[j]=st; S[j][i]=st
                if j<i: st[0]+=e*ej; st[1]+=e*e; st[2]+=ej*ej
                else: st[0]+=e*ej; st[1]+=ej*ej; st[2]+=e*e
                st[3]+=1
        usq[u]+=e*e; isq[i]+=e*e
        if gs:
            for g in gs: us[g]+=e; un[g]+=1; ue[g]+=0.1*(e-ue[g])
        recent[u].append((i,r,mu+bu[u]+bi[i],e))
        if len(recent[u])>knnL: recent[u].popleft()
        lt[u]=t; s+=r; n+=1
    out.close()

KQ=float(os.environ.get('KQ','0')); KQ2=float(os.environ.get('KQ2','0'))  # Kalman random-walk noise (use with LAM=1)
def blend(spec, lam=float(os.environ.get('LAM','0.9999')), delta=100.0, seg=os.environ.get('SEG','')):
    # SEG='lnu:2.3,4.6' -> separate blend weights per bucket of that feature
    lines=open(FEAT).read().split('\n')
    names=lines[0].split(); idx={k:j for j,k in enumerate(names)}
    terms=[]
    for nm in spec.split(','):
        if '*' in nm: a,b=nm.split('*'); terms.append((idx[a],idx[b]))
        else: terms.append((idx[nm],None))
    D=len(terms)+1
    segf=None; cuts=[]
    if seg:
        a,b=seg.split(':'); segf=idx[a]; cuts=[float(x) for x in b.split(',')]
    WS=[[0.0]*D for _ in range(len(cuts)+1)]
    PS=[[[delta if a==b else 0.0 for b in range(D)] for a in range(D)] for _ in range(len(cuts)+1)]
    ae=0.0; se=0.0; n=0
    ir=idx['r']; ib=idx['base']
    # optional second stage: a fast-forgetting (LAM2) or per-user (PERUSER=1)
    # RLS on the first stage's residual, over the features in S2 (comma list)
    s2=[idx[k] for k in os.environ.get('S2','').split(',') if k]
    lam2=float(os.environ.get('LAM2','0.999')); peru=os.environ.get('PERUSER')=='1'
    D2=len(s2)+2; d2=float(os.environ.get('DELTA2','1'))
    newst=lambda: ([0.0]*D2,[[d2 if a==b else 0.0 for b in range(D2)] for a in range(D2)])
    st2={}; uids=[u for u,i,r,t in load()[0]] if peru else None; ev=0
    HALF=(len(lines)-2)//2; halves=[[0.0]*5,[0.0]*5]  # per-half mae/rmse vs the bias arm
    for ln in lines[1:]:
        if not ln: continue
        v=[float(x) for x in ln.split()]
        r=v[ir]; base=v[ib]
        x=[1.0]+[v[a] if b is None else v[a]*v[b] for a,b in terms]
        sg=0
        if segf is not None:
            while sg<len(cuts) and v[segf]>=cuts[sg]: sg+=1
        w=WS[sg]; P=PS[sg]
        # predict base + blend (blend fits residual of base)
        y=base+sum(w[k]*x[k] for k in range(D))
        if s2:
            key=uids[ev] if peru else 0; ev+=1
            if key not in st2: st2[key]=newst()
            w2,P2=st2[key]; x2=[1.0,y-base]+[v[a] for a in s2]
            y2=y+sum(w2[a]*x2[a] for a in range(D2))
            pc=min(max(y2,0.5),5.0)
        else: pc=min(max(y,0.5),5.0)
        d=pc-r; ae+=abs(d); se+=d*d; n+=1
        h=0 if n<=HALF else 1; db=min(max(base,0.5),5.0)-r
        halves[h][0]+=abs(d); halves[h][1]+=d*d; halves[h][2]+=abs(db); halves[h][3]+=db*db; halves[h][4]+=1
        if s2:
            Px=[sum(P2[a][b]*x2[b] for b in range(D2)) for a in range(D2)]
            g=lam2+sum(x2[a]*Px[a] for a in range(D2)); k2=[p/g for p in Px]
            err=r-y2
            for a in range(D2): w2[a]+=k2[a]*err
            for a in range(D2):
                Pa=P2[a]; ka=k2[a]
                for b in range(D2): Pa[b]=(Pa[b]-ka*Px[b])/lam2
                Pa[a]+=KQ2
        # RLS update on target r-base
        Px=[sum(P[a][b]*x[b] for b in range(D)) for a in range(D)]
        g=lam+sum(x[a]*Px[a] for a in range(D))
        k=[p/g for p in Px]
        err=(r-base)-sum(w[a]*x[a] for a in range(D))
        for a in range(D): w[a]+=k[a]*err
        for a in range(D):
            Pa=P[a]; ka=k[a]
            for b in range(D): Pa[b]=(Pa[b]-ka*Px[b])/lam
            Pa[a]+=KQ
    for h,(a,b,c,d_,m) in enumerate(halves):
        print('  half %d: mae %.4f rmse %.4f  bias arm %.4f %.4f  ratio %.3fx %.3fx'%(h+1,a/m,(b/m)**.5,c/m,(d_/m)**.5,a/c,(b/d_)**.5))
    return ae/n,(se/n)**.5,WS[0]

if __name__=='__main__':
    if sys.argv[1]=='gen':
        os.makedirs(os.path.dirname(FEAT),exist_ok=True)
        t0=time.time(); gen(int(sys.argv[2]) if len(sys.argv)>2 else 0); print('gen %.0fs'%(time.time()-t0))
    else:
        for sp in sys.argv[2:]:
            t0=time.time(); m,r_,w=blend(sp)
            print('%-50s mae %.4f rmse %.4f (%.3fx %.3fx) %.0fs w=%s'%(sp,m,r_,m/0.6585,r_/0.8617,time.time()-t0,' '.join('%.3f'%x for x in w)),flush=True)
