# Predicted minus measured top-1 of the front members a search measured (pareto.json): mean,
# RMSE and Kendall tau, as the README's predictor tables report them. Usage: front_gap.py RUN/pareto.json...
import json, sys, itertools, math
for path in sys.argv[1:]:
    d = json.load(open(path))
    pairs = [(m['metrics']['acc_predicted'], m['metrics']['acc_measured']) for m in d['members'] if m['metrics'].get('acc_measured') is not None]
    n = len(pairs)
    gap = [100*(p-q) for p, q in pairs]
    mean = sum(gap)/n; rmse = math.sqrt(sum(g*g for g in gap)/n)
    c = dcount = 0
    for (a, b), (x, y) in itertools.combinations(pairs, 2):
        s = (a-x)*(b-y)
        if s > 0: c += 1
        elif s < 0: dcount += 1
    tau = (c-dcount)/(n*(n-1)/2)
    print(f"{path}: n={n} mean gap (pred-meas) {mean:+.2f} pp, RMSE {rmse:.2f}, Kendall tau {tau:.2f}")
