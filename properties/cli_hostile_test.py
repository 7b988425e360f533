#!/usr/bin/env python3
"""Reliability of `moecheck fuzz` against hostile code under test, through the real CLI.

Usage: cli_hostile_test.py --exe MOECHECK --plugin HOSTILE.so [--worker] [--probe PROBE] SCENARIO

The hostile plugin (properties/plugins/hostile_plugin.cpp) misbehaves as MOECHECK_HOSTILE says.
Each scenario runs moecheck in a fresh temporary folder, on a private copy of the plugin (so that
a scan of /proc for processes mapping it sees only this scenario's processes), and checks what a
user sees: exit code, wall time, the JSON/JUnit/state files, and that no process is left behind.
--worker runs the host plugin in the persistent worker process of CUDA plugins
(MOECHECK_PLUGIN_WORKER=1) instead of a fork per call. The cuda_worker_* scenarios take a CUDA
plugin (any correct one) and --probe, a program that exits 0 when a CUDA device is usable; without
one they print MOECHECK_GPU_SKIP and pass. Python standard library only.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Env:
    def __init__(self, exe, plugin, tmp, worker=False):
        self.exe = exe
        self.worker = worker
        self.tmp = tmp
        self.plugin = os.path.join(tmp, "hostile-%d.so" % os.getpid())
        shutil.copy(plugin, self.plugin)
        self.pidfile = os.path.join(tmp, "hang.pids")

    def path(self, name):
        return os.path.join(self.tmp, name)

    def env(self, mode):
        e = dict(os.environ)
        e["MOECHECK_HOSTILE"] = mode
        e["MOECHECK_HOSTILE_PIDFILE"] = self.pidfile
        if self.worker:
            e["MOECHECK_PLUGIN_WORKER"] = "1"
        return e

    def start(self, mode, args):
        cmd = [self.exe, "fuzz", "--plugin", self.plugin, "--no-progress", "--seed", "1"] + args
        print("$ MOECHECK_HOSTILE=%s %s" % (mode, " ".join(cmd)), flush=True)
        return subprocess.Popen(cmd, cwd=self.tmp, env=self.env(mode), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def finish(self, proc, limit):
        """Waits up to `limit` seconds; kills the whole session and fails when it runs longer."""
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            print(out, err)
            raise Failure("moecheck still running after %.0f s (killed)" % limit)
        print(out, err, sep="\n", flush=True)
        return proc.returncode, out + err

    def run(self, mode, args, limit=30):
        t = time.monotonic()
        proc = self.start(mode, args)
        rc, text = self.finish(proc, limit)
        return rc, text, time.monotonic() - t

    def hangs(self):
        """(pid, T) of every call that started hanging."""
        if not os.path.exists(self.pidfile):
            return []
        with open(self.pidfile) as f:
            return [tuple(int(x) for x in line.split()) for line in f if line.strip()]

    def hang_pids(self):
        return [pid for pid, _ in self.hangs()]

    def wait_for_hang(self, count=1, limit=20):
        end = time.monotonic() + limit
        while len(self.hang_pids()) < count:
            check(time.monotonic() < end, "the plugin never started hanging")
            time.sleep(0.02)

    def live_plugin_processes(self):
        """Processes that are running (not zombies) and either recorded a hang or map our copy."""
        found = set()
        for pid in self.hang_pids():
            if alive(pid):
                found.add(pid)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/maps" % entry) as f:
                    if self.plugin in f.read() and alive(int(entry)):
                        found.add(int(entry))
            except OSError:
                pass
        return sorted(found)

    def expect_no_process_left(self, limit=3.0):
        end = time.monotonic() + limit
        while True:
            left = self.live_plugin_processes()
            if not left:
                return
            if time.monotonic() > end:
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                raise Failure("processes left behind: %s" % left)
            time.sleep(0.05)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


def load_json(path):
    check(os.path.exists(path), "%s was not written" % os.path.basename(path))
    with open(path) as f:
        return json.load(f)


def expect_outputs(e, json_name="r.json", junit_name="r.xml", state_name="s.json"):
    j = load_json(e.path(json_name))
    check(os.path.exists(e.path(junit_name)), "JUnit was not written")
    s = load_json(e.path(state_name))
    check(s.get("schema") == "moecheck-campaign-state/1", "bad state file")
    leftovers = [n for n in os.listdir(e.tmp) if n.endswith(".tmp")]
    check(not leftovers, "temporary files left behind: %s" % leftovers)
    return j, s


OUTPUTS = ["--json", "r.json", "--junit", "r.xml", "--state", "s.json", "--corpus", "corpus"]


# ---- scenarios ------------------------------------------------------------------------------

def hang_budget(e):
    """A plugin that hangs for T > 5 under --seconds 5: bounded, exit 1, everything written."""
    rc, text, dt = e.run("hang", ["--seconds", "5"] + OUTPUTS, limit=30)
    check(rc == 1, "exit code %d, expected 1" % rc)
    check(dt < 30, "took %.1f s" % dt)
    j, _ = expect_outputs(e)
    checks = {f["check"] for f in j["failure_list"]}
    check(checks == {"timeout"}, "failure checks %s, expected the hang as 'timeout'" % checks)
    check(j["failure_list"][0]["corpus_file"], "the hang was not saved to the corpus")
    e.expect_no_process_left()
    print("finished in %.1f s" % dt)


def hang_stop(e, sig, isolated=True):
    """A stop signal while a case hangs: stops within ~1 s, state written, exit 4 (nothing failed)."""
    args = ["--seconds", "120"] + OUTPUTS + ([] if isolated else ["--no-isolation"])
    proc = e.start("hang", args)
    e.wait_for_hang()
    time.sleep(0.3)
    t = time.monotonic()
    proc.send_signal(sig)
    rc, text = e.finish(proc, 20)
    dt = time.monotonic() - t
    check(dt < 2.0, "stopping took %.2f s after the signal" % dt)
    check(rc == 4, "exit code %d, expected 4 (interrupted, no failure)" % rc)
    j, s = expect_outputs(e)
    check(j["interrupted"] is True, "results not marked interrupted")
    e.expect_no_process_left()
    print("stopped %.2f s after the signal" % dt)
    # The abandoned case was not judged: --resume runs it (a behaving plugin now), nothing skipped.
    hung_rows = e.hangs()[0][1]
    budget = s["cases"] + s["skipped"] + 1
    rc, text, _ = e.run("", ["--resume", "--cases", str(budget)] + OUTPUTS)
    check(rc == 0, "resume: exit code %d, expected 0" % rc)
    r = load_json(e.path("r.json"))
    check(r["cases"] == s["cases"] + 1 and r["rows"] - s["rows"] == hung_rows,
          "resume did not run the abandoned case (T = %d) first" % hung_rows)


def hang_sigint(e):
    hang_stop(e, signal.SIGINT)


def hang_sigterm(e):
    hang_stop(e, signal.SIGTERM)


def hang_sigint_inprocess(e):
    hang_stop(e, signal.SIGINT, isolated=False)


def hang_sigint_shrinking(e):
    """SIGINT while shrinking a hang: stops within ~1 s, the best case so far is saved, exit 1."""
    # --seconds 20: a case may run 2 s; the first hang times out, then shrink candidates hang.
    proc = e.start("hang", ["--seconds", "20"] + OUTPUTS)
    e.wait_for_hang(count=3)
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc, text = e.finish(proc, 20)
    dt = time.monotonic() - t
    check(dt < 2.0, "stopping took %.2f s after the signal" % dt)
    check(rc == 1, "exit code %d, expected 1 (a failure was found before the stop)" % rc)
    j, _ = expect_outputs(e)
    check(j["interrupted"] is True and len(j["failure_list"]) == 1, "expected one failure and interrupted")
    check(j["failure_list"][0]["check"] == "timeout", "expected a timeout failure")
    e.expect_no_process_left()
    print("stopped %.2f s after the signal" % dt)


def hang_sigkill(e):
    """SIGKILL of moecheck while its worker hangs: the worker dies too."""
    proc = e.start("hang", ["--seconds", "120"] + OUTPUTS)
    e.wait_for_hang()
    workers = e.hang_pids()
    check(all(alive(p) for p in workers), "the worker is not running")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()  # not communicate(): an orphaned worker would hold the pipes open
    proc.stdout.close()
    proc.stderr.close()
    e.expect_no_process_left(limit=2.0)
    print("worker %s gone after SIGKILL of moecheck %d" % (workers, proc.pid))


def out_of_bounds(e, mode, buffer, count, isolated):
    args = ["--cases", "40", "--max-failures", "2"] + OUTPUTS + ([] if isolated else ["--no-isolation"])
    rc, text, _ = e.run(mode, args)
    check(rc == 1, "exit code %d, expected 1" % rc)
    j, _ = expect_outputs(e)
    check(j["failure_list"], "no failure reported")
    for f in j["failure_list"]:
        check(f["check"] == "out-of-bounds-write", "check %r, expected out-of-bounds-write" % f["check"])
        want = "%d of the 64 guard elements after `%s` overwritten" % (count, buffer)
        check(want in f["message"], "message %r lacks %r" % (f["message"], want))


def oob_ids(e):
    out_of_bounds(e, "oob-ids", "ids", 16, True)


def oob_ids_inprocess(e):
    out_of_bounds(e, "oob-ids", "ids", 16, False)


def oob_weights(e):
    out_of_bounds(e, "oob-weights", "weights", 1, True)


def oob_weights_inprocess(e):
    out_of_bounds(e, "oob-weights", "weights", 1, False)


def exit_inprocess(e, mode="exit"):
    """exit(0) from the plugin under --no-isolation: exit 1, the case recorded, outputs written."""
    rc, text, _ = e.run(mode, ["--cases", "200", "--no-isolation"] + OUTPUTS)
    check(rc == 1, "exit code %d, expected 1" % rc)
    j, s = expect_outputs(e)
    check(j["aborted"] is True and j["interrupted"] is True, "results not marked aborted")
    check([f["check"] for f in j["failure_list"]] == ["crash"], "expected one crash failure")
    check("exit()" in j["failure_list"][0]["message"], "the failure does not name exit()")
    check("aborted" in text, "no summary printed")


def quick_exit_inprocess(e):
    exit_inprocess(e, "quick-exit")


def bad_output_paths(e):
    """Every output path is checked before the first case: exit 2 at once, naming it."""
    os.mkdir(e.path("adir"))
    with open(e.path("afile"), "w") as f:
        f.write("x")
    cases = [
        (["--json", "/proc/moecheck-x.json"], "/proc/moecheck-x.json"),
        (["--json", "adir"], "adir"),
        (["--junit", "/proc/moecheck-x.xml"], "/proc/moecheck-x.xml"),
        (["--state", "adir"], "adir"),
        (["--corpus", "afile"], "afile"),
        (["--json", "afile/x.json"], "afile/x.json"),
    ]
    for args, named in cases:
        full = ["--seconds", "20"] + args
        if "--corpus" not in args:
            full += ["--corpus", "corpus"]
        rc, text, dt = e.run("", full, limit=20)
        check(rc == 2, "%s: exit code %d, expected 2" % (args, rc))
        check(named in text, "%s: the message does not name %r" % (args, named))
        check(dt < 5, "%s: took %.1f s (the campaign ran)" % (args, dt))
        check("cases " not in text, "%s: cases ran" % args)
    leftovers = [n for n in os.listdir(e.tmp) + os.listdir(e.path("adir")) if n.endswith(".tmp")]
    check(not leftovers, "temporary files left behind: %s" % leftovers)


def write_fails_at_end(e):
    """An output that becomes unwritable during the run: the others are written, exit 3, no .tmp."""
    os.mkdir(e.path("out"))
    proc = e.start("", ["--seconds", "2", "--json", "out/r.json", "--junit", "r.xml", "--state", "s.json",
                        "--corpus", "corpus"])
    time.sleep(0.8)
    shutil.rmtree(e.path("out"))
    with open(e.path("out"), "w") as f:  # the folder of --json is now a file
        f.write("in the way")
    rc, text = e.finish(proc, 20)
    check(rc == 3, "exit code %d, expected 3" % rc)
    check("out/r.json" in text, "the failed write is not named")
    check(os.path.exists(e.path("r.xml")) and os.path.exists(e.path("s.json")), "the other outputs were not written")
    leftovers = [n for n in os.listdir(e.tmp) if n.endswith(".tmp")]
    check(not leftovers, "temporary files left behind: %s" % leftovers)


def case_timeout_flag(e):
    """--case-timeout sets the hang limit (named in the failure); bad values are exit 2."""
    rc, text, dt = e.run("hang", ["--seconds", "3", "--case-timeout", "0.3"] + OUTPUTS, limit=20)
    check(rc == 1, "exit code %d, expected 1" % rc)
    j, _ = expect_outputs(e)
    check(j["case_timeout_s"] == 0.3, "case_timeout_s %r in the results" % j.get("case_timeout_s"))
    check("within 0.3 s" in j["failure_list"][0]["message"], "the timeout is not named in the failure")
    e.expect_no_process_left()
    for bad in ["0", "-1", "nan", "x"]:
        rc, text, _ = e.run("", ["--cases", "5", "--case-timeout", bad], limit=20)
        check(rc == 2 and "case-timeout" in text, "--case-timeout %s: exit code %d, expected 2 naming the flag" % (bad, rc))


def interrupted_exit_code(e):
    """SIGINT during a campaign that found nothing: exit 4, not 0."""
    proc = e.start("", ["--seconds", "60"] + OUTPUTS)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    rc, text = e.finish(proc, 10)
    check(rc == 4, "exit code %d, expected 4" % rc)
    j, _ = expect_outputs(e)
    check(j["interrupted"] is True and not j["failure_list"] and j["cases"] > 0, "unexpected results")
    with open(e.path("r.xml")) as f:
        junit = f.read()
    check('errors="1"' in junit and "<error message=\"interrupted" in junit, "JUnit does not report the interruption")


def segv_continues(e):
    """A plugin that dies with SIGSEGV for T > 5: each such case is a crash, the campaign runs on."""
    rc, text, _ = e.run("segv", ["--cases", "60", "--max-failures", "0"] + OUTPUTS, limit=60)
    check(rc == 1, "exit code %d, expected 1" % rc)
    j, _ = expect_outputs(e)
    checks = {f["check"] for f in j["failure_list"]}
    check(checks == {"crash"}, "failure checks %s, expected only 'crash'" % checks)
    check("signal 11" in j["failure_list"][0]["message"], "the crash does not name SIGSEGV")
    check(j["cases"] + j["skipped"] + j["outside_contract"] == 60 and not j["aborted"],
          "the campaign did not run its whole budget")
    check(all(f["shrunk"]["T"] == 6 for f in j["failure_list"]), "crashes not shrunk to T = 6")
    e.expect_no_process_left()


def cuda_worker_processes(e, proc, limit=60):
    """Waits until moecheck, the worker's supervisor and the worker map the plugin; returns them."""
    end = time.monotonic() + limit
    while True:
        found = e.live_plugin_processes()
        if len(found) >= 3:
            return found
        check(proc.poll() is None, "moecheck ended early (exit %s)" % proc.returncode)
        check(time.monotonic() < end, "no worker process maps the plugin (found %s)" % found)
        time.sleep(0.05)


def uses_cuda(pid):
    """True when process `pid` has a CUDA device file open or mapped (it initialised CUDA)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            if "/dev/nvidia" in f.read():
                return True
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("/dev/nvidia"):
                return True
        except OSError:
            pass
    return False


def cuda_worker_sigkill(e):
    """SIGKILL of moecheck during a CUDA plugin campaign: its worker processes go at once.
    Meanwhile only the worker uses CUDA: moecheck itself never initialised it, even after a
    state save (every 5 s), which records the device's name."""
    proc = e.start("", ["--seconds", "120"] + OUTPUTS)
    found = cuda_worker_processes(e, proc)
    time.sleep(6.0)  # cases running on the device, and a state save
    check(os.path.exists(e.path("s.json")), "no state saved after 6 s")
    users = [p for p in found if uses_cuda(p)]
    check(proc.pid not in users, "moecheck itself initialised CUDA")
    check(len(users) == 1, "expected exactly one process (the worker) using CUDA, found %s of %s" % (users, found))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    e.expect_no_process_left(limit=2.0)
    print("processes %s gone after SIGKILL of moecheck %d" % (found, proc.pid))


def cuda_worker_sigint(e):
    """SIGINT during a CUDA plugin campaign: stops within 2 s, exit 4, no process left."""
    proc = e.start("", ["--seconds", "120"] + OUTPUTS)
    cuda_worker_processes(e, proc)
    time.sleep(1.5)
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc, text = e.finish(proc, 20)
    dt = time.monotonic() - t
    check(dt < 2.0, "stopping took %.2f s after the signal" % dt)
    check(rc == 4, "exit code %d, expected 4 (interrupted, no failure)" % rc)
    j, _ = expect_outputs(e)
    check(j["interrupted"] is True and j["cases"] > 0, "results not marked interrupted, or no case ran")
    e.expect_no_process_left()
    print("stopped %.2f s after the signal" % dt)


SCENARIOS = {f.__name__: f for f in [
    hang_budget, hang_sigint, hang_sigterm, hang_sigint_inprocess, hang_sigint_shrinking, hang_sigkill,
    oob_ids, oob_ids_inprocess, oob_weights, oob_weights_inprocess, exit_inprocess, quick_exit_inprocess,
    bad_output_paths, write_fails_at_end, case_timeout_flag, interrupted_exit_code, segv_continues,
    cuda_worker_sigkill, cuda_worker_sigint]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--worker", action="store_true", help="host plugin in the persistent worker")
    ap.add_argument("--probe", help="skip unless this program exits 0 (a CUDA device is usable)")
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    a = ap.parse_args()
    if a.probe:
        p = subprocess.run([a.probe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            print("MOECHECK_GPU_SKIP: %s" % p.stdout.strip())
            return 0
    tmp = tempfile.mkdtemp(prefix="moecheck-hostile-")
    try:
        SCENARIOS[a.scenario](Env(os.path.abspath(a.exe), os.path.abspath(a.plugin), tmp, a.worker))
    except Failure as f:
        print("FAILED %s: %s" % (a.scenario, f), flush=True)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("ok %s" % a.scenario)
    return 0


if __name__ == "__main__":
    sys.exit(main())
