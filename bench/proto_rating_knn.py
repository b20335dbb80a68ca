#!/usr/bin/env python3
# bench/proto_rating_knn.py - a prototype, not driftrec code: how much an
# item-neighbourhood term on rating residuals adds to the online biases-only
# model (the replay's `bias` arm: step 0.1, L2 0.1) on ml-latest-small, in
# event-time order, prequential (predict, then learn). The term: beta *
# sum_j s_ij (r_uj - (mu + b_u + b_j)) / (lam + sum_j s_ij) over the user's
# last L ratings, s_ij = C_ij / sqrt(n_i n_j), C counting items rated within
# W ratings of each other by the same user. Figures: docs/BENCHMARKS.md,
# "Baselines and one set of defaults (issue 15)".
#   python3 bench/proto_rating_knn.py [ratings.csv]      (~1 min per setting)
import csv, math, sys
from collections import defaultdict, deque
rows=list(csv.reader(open(sys.argv[1] if len(sys.argv) > 1 else '../shared/data/ml-latest-small/ratings.csv')))[1:]
rows=[(int(u),int(i),float(r),int(t)) for u,i,r,t in rows]
rows.sort(key=lambda x:x[3])
def run(beta, W=10, L=10, lam=1.0, lr=0.1, reg=0.1):
    bu=defaultdict(float); bi=defaultdict(float); s=0; n=0; ae=0; se=0
    C=defaultdict(lambda: defaultdict(float)); cnt=defaultdict(float)
    recent=defaultdict(deque)
    for u,i,r,t in rows:
        mu = s/n if n else 3.0
        base = mu+bu[u]+bi[i]
        num=0; den=lam
        if beta:
            ci=C[i]
            for (j,rj) in recent[u]:
                c=ci.get(j,0.0)
                if c:
                    sij=c/math.sqrt(cnt[i]*cnt[j])
                    num+=sij*(rj-(mu+bu[u]+bi[j])); den+=sij
        p=base+beta*num/den
        pc=min(max(p,0.5),5); d=pc-r; ae+=abs(d); se+=d*d
        e=r-base
        bu[u]+=lr*(e-reg*bu[u]); bi[i]+=lr*(e-reg*bi[i])
        # cooc
        for (j,rj) in list(recent[u])[-W:]:
            if j!=i: C[i][j]+=1; C[j][i]+=1
        cnt[i]+=1
        recent[u].append((i,r))
        if len(recent[u])>L: recent[u].popleft()
        s+=r;n+=1
    return ae/len(rows),(se/len(rows))**.5
for args in [dict(beta=0), dict(beta=1), dict(beta=1, L=30, W=30), dict(beta=1, L=60, W=60)]:
    print(args, run(**args))
