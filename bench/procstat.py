"""What /proc says about a running process, for the benchmark scripts: its resident memory, its
CPU time, its CPU time per thread name (the daemon names its threads: sink, mqtt-sub, worker-0,
...), and its context switches. Each reading is cumulative since the process started, so a
benchmark takes one before and one after its run and reports the difference."""
import collections
import os
import re

TICK = os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def cpu_s(pid):
    """User + system CPU seconds the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu_s(pid):
    """User + system CPU seconds per (thread id, name) of the process so far."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                name, rest = f.read().split(" (", 1)[1].rsplit(")", 1)
        except OSError:  # the thread ended meanwhile
            continue
        fields = rest.split()
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def busiest_threads(before, after, n=6):
    """The n thread names that used the most CPU between two thread_cpu_s readings, with their
    seconds (threads of one name, such as MHD-worker, summed)."""
    by_name = collections.Counter()
    for t, c in after.items():
        by_name[t[1]] += c - before.get(t, 0)
    return {name: round(c, 2) for name, c in by_name.most_common(n)}


def ctx_switches(pid):
    """Voluntary + involuntary context switches of all the process's threads so far."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total += sum(int(m) for m in re.findall(r"^\w*voluntary_ctxt_switches:\s+(\d+)",
                                                        f.read(), re.M))
        except OSError:  # the thread ended meanwhile
            continue
    return total
