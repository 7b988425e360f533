#!/usr/bin/env python3
"""Regenerates the synthetic benchmark fixtures of this folder.

The files model Google Benchmark output (--benchmark_repetitions=3 with mean, median,
stddev and cv aggregates, bytes_per_second and copy_fraction counters, the moecheck_*
context keys) for a routing kernel whose time is launch overhead + bytes / bandwidth:

  bench_baseline.json  reference run (seeded noise, cv around 1%)
  bench_rerun.json     same model, other noise draws: must not be flagged
  bench_missing.json   one benchmark dropped, one added
  bench_slow20.json    bench_baseline.json through ../synthetic_slowdown.py --factor 1.2
  noisy_baseline.json  two benchmarks, cv 5% and cv 1%
  noisy_current.json   both 10% slower: only the cv-1% one is a regression

Not touched by this script: gbench_1_7_real.json, the verbatim output of a real Google
Benchmark 1.7.1 run of a memcpy stand-in (NaN literals included, one SkipWithError
benchmark), and the hand-written bad_*.json and campaign_*.json.
"""
import json, os, random, statistics, subprocess, sys
OUT=os.path.dirname(os.path.abspath(__file__)) + '/'
def ctx(commit, date, device="NVIDIA H100 80GB HBM3", driver="580.65.06", toolkit="CUDA 13.0"):
    return {"date": date, "host_name": "gpu-ci-07", "executable": "./build/bench/routing_bench",
            "num_cpus": 16, "mhz_per_cpu": 2000, "cpu_scaling_enabled": False, "caches": [],
            "load_avg": [0.5, 0.4, 0.3], "library_build_type": "release",
            "moecheck_commit": commit, "moecheck_copy_ceiling_gbs": "3000",
            "moecheck_device": device, "moecheck_driver": driver, "moecheck_toolkit": toolkit}
def entries(name, fam, inst, times, bytes_per_call, ceiling=3000.0):
    out=[]
    n=len(times)
    for i,t in enumerate(times):
        bps = bytes_per_call/(t*1e-9)
        out.append({"name":name,"family_index":fam,"per_family_instance_index":inst,"run_name":name,
                    "run_type":"iteration","repetitions":n,"repetition_index":i,"threads":1,
                    "iterations":1000,"real_time":t,"cpu_time":t*1.02,"time_unit":"ns",
                    "bytes_per_second":bps,"copy_fraction":bps/(ceiling*1e9)})
    def agg(aname, f, unit="time"):
        rt=f(times); ct=f([x*1.02 for x in times])
        bpsl=[bytes_per_call/(x*1e-9) for x in times]
        b=f(bpsl); cf=f([x/(ceiling*1e9) for x in bpsl])
        return {"name":name+"_"+aname,"family_index":fam,"per_family_instance_index":inst,"run_name":name,
                "run_type":"aggregate","repetitions":n,"threads":1,"aggregate_name":aname,"aggregate_unit":unit,
                "iterations":n,"real_time":rt,"cpu_time":ct,"time_unit":"ns","bytes_per_second":b,"copy_fraction":cf}
    cv=lambda v: statistics.stdev(v)/statistics.mean(v)
    out += [agg("mean",statistics.mean), agg("median",statistics.median), agg("stddev",statistics.stdev),
            agg("cv",cv,"percentage")]
    return out

def model(variant, dtype, E, k, T):
    esz={"bf16":2,"f16":2,"f32":4}[dtype]
    byts = T*(E*esz + k*8)
    bw={"warp_per_row":2400e9,"block_per_row":1900e9,"sort_based":900e9}[variant]
    if variant=="block_per_row" and E<=128: bw*=0.8
    return 3500.0 + byts/bw*1e9, byts

SHAPES=[("bf16",128,8,[1,1000,16384,250000],["warp_per_row","block_per_row","sort_based"]),
        ("f32",256,2,[1000,65536],["warp_per_row","block_per_row"])]
def run(seed, commit, date, noise=0.01, drop=None, add=None, bias=None):
    rnd=random.Random(seed)
    b=[]; fam=0
    for dtype,E,k,Ts,vs in SHAPES:
        for v in vs:
            for T in Ts:
                name=f"BM_Route/variant:{v}/dtype:{dtype}/E:{E}/k:{k}/T:{T}/manual_time"
                if drop and name in drop: continue
                t0,byts=model(v,dtype,E,k,T)
                if bias: t0*=bias.get(name,1.0)
                times=[t0*(1+rnd.gauss(0,noise)) for _ in range(3)]
                b+=entries(name,fam,0,times,byts); fam+=1
    # a benchmark without shape segments
    name="BM_CopyCeiling/bytes:1073741824/manual_time"
    times=[1073741824*2/3000e9*1e9*(1+rnd.gauss(0,noise)) for _ in range(3)]
    b+=entries(name,fam,0,times,1073741824*2); fam+=1
    if add:
        for name in add:
            times=[50000*(1+rnd.gauss(0,noise)) for _ in range(3)]
            b+=entries(name,fam,0,times,1e6); fam+=1
    return {"context":ctx(commit,date),"benchmarks":b}

def dump(obj, fn):
    with open(OUT+fn,'w') as f: json.dump(obj,f,indent=2); f.write('\n')

dump(run(1,"a1b2c3d4e5f6","2026-11-20T02:00:00+00:00"),"bench_baseline.json")
dump(run(2,"b2c3d4e5f6a7","2026-11-21T02:00:00+00:00"),"bench_rerun.json")
dump(run(3,"c3d4e5f6a7b8","2026-11-22T02:00:00+00:00",
         drop={"BM_Route/variant:sort_based/dtype:bf16/E:128/k:8/T:1/manual_time"},
         add=["BM_Route/variant:warp_per_row/dtype:bf16/E:128/k:8/T:65536/manual_time"]),"bench_missing.json")

# noisy pair: cv 5% on one benchmark, 1% on the other; both 10% slower in "current"
def noisy(scale, commit):
    b=[]
    b+=entries("BM_Route/variant:warp_per_row/dtype:f16/E:64/k:4/T:4096/manual_time",0,0,
               [x*scale for x in [9500.0,10000.0,10500.0]], 4096*(64*2+32))
    b+=entries("BM_Route/variant:block_per_row/dtype:f16/E:64/k:4/T:4096/manual_time",1,0,
               [x*scale for x in [9900.0,10000.0,10100.0]], 4096*(64*2+32))
    return {"context":ctx(commit,"2026-11-20T03:00:00+00:00"),"benchmarks":b}
dump(noisy(1.0,"n01se0000001"),"noisy_baseline.json")
dump(noisy(1.10,"n01se0000002"),"noisy_current.json")

here = os.path.dirname(os.path.abspath(__file__))
subprocess.run([sys.executable, os.path.join(here, "..", "synthetic_slowdown.py"),
                os.path.join(here, "bench_baseline.json"), os.path.join(here, "bench_slow20.json"),
                "--factor", "1.2", "--commit", "d4e5f6a7b8c9"], check=True)
