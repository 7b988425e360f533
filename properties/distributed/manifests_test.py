#!/usr/bin/env python3
"""The cluster examples are real: the Kubernetes Indexed Job (scripts/k8s/), the GitHub Actions
matrix (scripts/ci/) and the Slurm job scripts (scripts/slurm/) are parsed, their shard
arguments checked against their shard counts, and their own shell commands run here, one per
index, on a small planted-mutant campaign (the files' campaign flags are swapped for it): the
shards they write must merge - with the examples' own merge commands - into exactly what one
process finds. No cluster is needed.

    manifests_test.py MOECHECK_BINARY SOURCE_DIR

Exit 0 pass, 1 fail, 77 skip (PyYAML missing; scripts/setup.sh installs python3-yaml).
"""
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    # A virtual environment first on PATH (.deps/tools holds one) hides the system's packages:
    # run again with the interpreter it was made from.
    base = os.path.join(sys.base_prefix, "bin", "python3")
    if sys.prefix != sys.base_prefix and os.path.exists(base):
        os.execv(base, [base] + sys.argv)
    print("SKIP: PyYAML (Debian python3-yaml) is not installed; scripts/setup.sh installs it")
    sys.exit(77)

BIN = os.path.realpath(sys.argv[1])
SRC = os.path.realpath(sys.argv[2])
EQUAL = os.path.join(SRC, "properties", "distributed", "campaign_equal.py")
PER_SHARD = 50
SMALL = "--target kernel:auto --mutant ignore_col_stride --seed 43 --max-failures 0 --cases %d" % PER_SHARD
PER_SHARD_FLAGS = {"--shard", "--json", "--junit", "--corpus", "--state", "--resume", "--first-case",
                   "--workers", "--devices"}
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)
    return ok


def run(cmd, cwd, env=None, shell="sh"):
    """Runs a command list, or a script string with /bin/sh -c (Kubernetes) or, with shell="bash",
    as GitHub Actions runs `run:` steps (bash -eo pipefail)."""
    full = dict(os.environ)
    full["PATH"] = os.path.join(cwd, "bin") + os.pathsep + full.get("PATH", "")
    full.update(env or {})
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd] if shell == "sh" else ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", cmd]
    p = subprocess.run(cmd, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def workdir(root, name):
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "bin"))
    os.symlink(BIN, os.path.join(d, "bin", "moecheck"))
    return d


def flags_ok(flags, where):
    words = shlex.split(flags)
    bad = [w for w in words if w.split("=")[0] in PER_SHARD_FLAGS]
    return check(not bad, "%s: campaign flags leave the per-shard flags to the job (%s)" % (where, bad or "none"))


def needs_gpu(flags):
    words = shlex.split(flags)
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if (w in ("--target", "-t") and (nxt.startswith("cuda:") or nxt == "composite:cuda")) or \
                w.startswith("--target=cuda:") or w == "--target=composite:cuda" or \
                (w == "--device" and nxt == "cuda") or w == "--device=cuda":
            return True
    return False


def equal_to_single(single, merged, where):
    rc, out = run(["python3", EQUAL, single, merged], cwd=os.path.dirname(merged))
    print(out.rstrip())
    return check(rc == 0, "%s: merged shards equal one process's run" % where)


def env_of(container):
    return {e["name"]: str(e["value"]) for e in container.get("env", [])}


def kubernetes(root, single, shards_expected):
    docs = list(yaml.safe_load_all(open(os.path.join(SRC, "scripts", "k8s", "campaign-indexed-job.yaml"))))
    merge_docs = list(yaml.safe_load_all(open(os.path.join(SRC, "scripts", "k8s", "merge-job.yaml"))))
    jobs = [d for d in docs if d.get("kind") == "Job"]
    pvcs = [d for d in docs if d.get("kind") == "PersistentVolumeClaim"]
    if not check(len(jobs) == 1 and len(pvcs) == 1 and len(merge_docs) == 1 and merge_docs[0]["kind"] == "Job",
                 "k8s: one PVC and one Job, and one merge Job"):
        return
    spec = jobs[0]["spec"]
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    env = env_of(c)
    n = spec.get("completions")
    check(spec.get("completionMode") == "Indexed", "k8s: completionMode Indexed")
    check(isinstance(n, int) and n >= 1 and str(n) == env.get("MOECHECK_SHARDS"),
          "k8s: completions (%s) == MOECHECK_SHARDS (%s)" % (n, env.get("MOECHECK_SHARDS")))
    check(n == shards_expected, "k8s: %s shards (the test's single run covers %s)" % (n, shards_expected))
    check(1 <= spec.get("parallelism", 1) <= n, "k8s: 1 <= parallelism <= completions")
    check(pod.get("restartPolicy") in ("OnFailure", "Never"), "k8s: restartPolicy allowed for Jobs")
    script = c["args"][0]
    check(c["command"] == ["/bin/sh", "-c"], "k8s: command is /bin/sh -c")
    check('i="$JOB_COMPLETION_INDEX"' in script and '--shard "$i/$n"' in script and 'n="$MOECHECK_SHARDS"' in script,
          "k8s: --shard $JOB_COMPLETION_INDEX/$MOECHECK_SHARDS")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    check(list(mounts.values()) == [env.get("MOECHECK_OUT")], "k8s: MOECHECK_OUT is the mounted volume")
    check(list(claims.values()) == [pvcs[0]["metadata"]["name"]], "k8s: the volume is the PVC")
    check("ReadWriteMany" in pvcs[0]["spec"]["accessModes"], "k8s: the PVC is shared by all pods (ReadWriteMany)")
    flags_ok(env["MOECHECK_FUZZ_FLAGS"], "k8s")
    gpu = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    check((gpu == 1) == needs_gpu(env["MOECHECK_FUZZ_FLAGS"]), "k8s: one GPU per pod exactly when the target is CUDA")

    d = workdir(root, "k8s")
    out = os.path.join(d, "volume")
    for i in range(n):
        rc, text = run(script, d, {"JOB_COMPLETION_INDEX": str(i), "MOECHECK_SHARDS": env["MOECHECK_SHARDS"],
                                   "MOECHECK_OUT": out, "MOECHECK_FUZZ_FLAGS": SMALL})
        check(rc == 0 and "shard %d/%d" % (i, n) in text, "k8s: pod %d ran shard %d/%d (exit %d)" % (i, i, n, rc)) or print(text)
    # A restarted pod resumes from its state file and does not run its cases again.
    before = json.load(open(os.path.join(out, "shards", "shard-1.json")))
    rc, text = run(script, d, {"JOB_COMPLETION_INDEX": "1", "MOECHECK_SHARDS": str(n), "MOECHECK_OUT": out,
                               "MOECHECK_FUZZ_FLAGS": SMALL})
    after = json.load(open(os.path.join(out, "shards", "shard-1.json")))
    check(rc == 0 and "resuming at case" in text and after["cases"] == before["cases"],
          "k8s: a restarted pod resumes from its state file") or print(text)

    mc = merge_docs[0]["spec"]["template"]["spec"]["containers"][0]
    menv = env_of(mc)
    mpod = merge_docs[0]["spec"]["template"]["spec"]
    check([m["mountPath"] for m in mc["volumeMounts"]] == [menv.get("MOECHECK_OUT")] and
          [v["persistentVolumeClaim"]["claimName"] for v in mpod["volumes"]] == list(claims.values()),
          "k8s: the merge Job mounts the campaign's volume at MOECHECK_OUT")
    rc, text = run(mc["args"][0], d, {"MOECHECK_OUT": out})
    check(rc == 1 and "merged %d shards" % n in text, "k8s: merge Job merged %d shards, exit 1 (failures found)" % n) or print(text)
    equal_to_single(single, os.path.join(out, "campaign.json"), "k8s")
    check(os.path.isfile(os.path.join(out, "campaign.html")), "k8s: merge Job wrote the report")


def github(root, single, shards_expected):
    wf = yaml.safe_load(open(os.path.join(SRC, "scripts", "ci", "github-actions-campaign.yml")))
    jobs = wf["jobs"]
    fuzz, merge = jobs.get("fuzz"), jobs.get("merge")
    if not check(fuzz is not None and merge is not None, "gha: fuzz and merge jobs"):
        return
    matrix = fuzz["strategy"]["matrix"]
    shards = matrix.get("shard")
    check(list(matrix.keys()) == ["shard"], "gha: the shard is the matrix's only dimension (job-total = shard count)")
    check(shards == list(range(len(shards or []))) and len(shards) == shards_expected,
          "gha: matrix.shard is 0..%d" % (shards_expected - 1))
    check(fuzz["strategy"].get("fail-fast") is False, "gha: fail-fast off (every shard runs)")
    check(merge.get("needs") in ("fuzz", ["fuzz"]) and merge.get("if") == "always()",
          "gha: the merge job needs the matrix and runs whatever the shards did")
    flags_ok(wf["env"]["FUZZ_FLAGS"], "gha")
    step = [s for s in fuzz["steps"] if "moecheck fuzz" in s.get("run", "")]
    mstep = [s for s in merge["steps"] if "moecheck merge" in s.get("run", "")]
    if not check(len(step) == 1 and len(mstep) == 1, "gha: one fuzz step, one merge step"):
        return
    n = len(shards)
    d = workdir(root, "gha")
    os.makedirs(os.path.join(d, "build", "default", "harness"))
    os.symlink(BIN, os.path.join(d, "build", "default", "harness", "moecheck"))
    upload = [s for s in fuzz["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    for i in range(n):
        script = step[0]["run"].replace("${{ matrix.shard }}", str(i)).replace("${{ strategy.job-total }}", str(n))
        check("${{" not in script, "gha: shard %d: every expression substituted" % i)
        check("--shard \"%d/%d\"" % (i, n) in script, "gha: shard %d runs --shard %d/%d" % (i, i, n))
        rc, text = run(script, d, {"FUZZ_FLAGS": SMALL}, shell="bash")
        check(rc == 0, "gha: shard %d job succeeds (exit %d)" % (i, rc)) or print(text)
        for p in upload[0]["with"]["path"].replace("${{ matrix.shard }}", str(i)).split():
            check(os.path.exists(os.path.join(d, p)), "gha: shard %d uploads %s" % (i, p))
    rc, text = run(mstep[0]["run"], d, {}, shell="bash")
    check(rc == 1 and "merged %d shards" % n in text, "gha: merge step merged %d shards, exit 1 (failures found)" % n) or print(text)
    equal_to_single(single, os.path.join(d, "campaign.json"), "gha")


def slurm(root, single, n):
    submit = os.path.join(SRC, "scripts", "slurm", "submit.sh")
    d = workdir(root, "slurm")
    out = os.path.join(d, "campaign")
    rc, text = run(["bash", submit, "--dry-run", "--shards", str(n), "--out", out, "--moecheck", BIN, "--",
                    "--target", "cuda:auto", "--seconds", "60"], d)
    lines = text.strip().splitlines()
    check(rc == 0 and len(lines) == 2, "slurm: dry run prints the array and the merge submission") or print(text)
    if len(lines) == 2:
        check("--array=0-%d" % (n - 1) in lines[0] and "--gres=gpu:1" in lines[0] and "campaign.sbatch" in lines[0],
              "slurm: array 0-%d, one GPU per task for a CUDA target" % (n - 1))
        check("--dependency=afterany:" in lines[1] and "merge.sbatch" in lines[1], "slurm: merge job depends on the array")
    rc, text = run(["bash", submit, "--dry-run", "--shards", str(n), "--out", out, "--", "--target", "kernel:auto"], d)
    check(rc == 0 and "--gres" not in text, "slurm: no GPU requested for a host target")
    for bad, why in ((["--shards", "0"], "--shards"), (["--shards", "2", "--", "--json", "x"], "--json")):
        rc, text = run(["bash", submit, "--dry-run", "--out", out] + bad, d)
        check(rc == 2 and why in text, "slurm: submit.sh refuses %s (exit %d)" % (" ".join(bad), rc)) or print(text)
    # The job scripts themselves, as Slurm would run them (array task environment), then the merge.
    env = {"MOECHECK_OUT": out, "MOECHECK_SHARDS": str(n), "MOECHECK_BIN": BIN}
    sbatch = os.path.join(SRC, "scripts", "slurm", "campaign.sbatch")
    for i in range(n):
        rc, text = run(["bash", sbatch] + shlex.split(SMALL), d, dict(env, SLURM_ARRAY_TASK_ID=str(i)))
        check(rc == 0 and "shard %d/%d" % (i, n) in text, "slurm: array task %d (exit %d)" % (i, rc)) or print(text)
    rc, text = run(["bash", sbatch] + shlex.split(SMALL), d, dict(env, SLURM_ARRAY_TASK_ID="2"))
    check(rc == 0 and "resuming from" in text, "slurm: a requeued task resumes from its state file") or print(text)
    rc, text = run(["bash", sbatch] + shlex.split(SMALL), d, dict(env, SLURM_ARRAY_TASK_ID=str(n)))
    check(rc == 2 and "does not fit" in text, "slurm: a task outside the shard count is refused") or print(text)
    rc, text = run(["bash", os.path.join(SRC, "scripts", "slurm", "merge.sbatch")], d, env)
    check(rc == 1 and "merged %d shards" % n in text, "slurm: merge job merged %d shards, exit 1" % n) or print(text)
    equal_to_single(single, os.path.join(out, "campaign.json"), "slurm")
    check(os.path.isfile(os.path.join(out, "campaign.html")), "slurm: merge job wrote the report")


def main():
    n = 4
    with tempfile.TemporaryDirectory(prefix="moecheck-manifests.") as root:
        single = os.path.join(root, "single.json")
        rc, text = run([BIN, "fuzz"] + shlex.split(SMALL.replace("--cases %d" % PER_SHARD, "--cases %d" % (PER_SHARD * n))) +
                       ["--no-progress", "--json", single, "--corpus", os.path.join(root, "single-corpus")], root)
        if not check(rc == 1, "the single-process run finds the planted bug (exit %d)" % rc):
            print(text)
            return 1
        kubernetes(root, single, n)
        github(root, single, n)
        slurm(root, single, n)
    print("%d check(s) failed" % len(failures) if failures else "PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
