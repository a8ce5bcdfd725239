#!/usr/bin/env python3
"""Generates Jepsen-style key-value histories (the shape of jepsen-kv/*.edn)
with many concurrent clients, linearizable by construction, and corrupted
copies that are not.

    generate.py SEED CLIENTS OPERATIONS KEYS OUT_PREFIX

writes OUT_PREFIX-ok.edn and OUT_PREFIX-bad.edn. Each operation takes effect
at a random moment between its invocation and its completion, in a model of
the store; reads return what the model holds then. 2% of operations end in
:info (the client gave up; the effect may or may not have happened, and the
process is replaced by a new one, as Jepsen does). The bad copy replaces the
value of one late completed read by a stale value of its key: what the key
held before an append that completed before the read was invoked (a stale
read that only a search over orders can refute).
Deterministic for a given seed.
"""
import heapq
import random
import sys


def main():
    seed, clients, operations, keys = (int(a) for a in sys.argv[1:5])
    prefix = sys.argv[5]
    rng = random.Random(seed)
    store = {str(k): "" for k in range(keys)}
    # Per key: (time it took effect, value after, the operation) for each append.
    history_of = {str(k): [(0, "", None)] for k in range(keys)}
    completed_at = {}  # id(operation) -> completion time
    events = []  # (time, order, line-dict)
    order = 0
    heap = []  # (time, kind, process, data)
    next_process = clients
    for process in range(clients):
        heapq.heappush(heap, (rng.randint(0, 1000), 0, process, None))
    counters = {}
    issued = 0
    reads = []
    while heap:
        time, kind, process, data = heapq.heappop(heap)
        if kind == 0:  # invoke
            if issued >= operations:
                continue
            issued += 1
            key = str(rng.randrange(keys))
            if rng.random() < 0.5:
                n = counters.get(process, 0)
                counters[process] = n + 1
                op = {"f": "append", "key": key, "value": f"x {process} {n} y"}
            else:
                op = {"f": "get", "key": key, "value": None}
            events.append((time, order, process, "invoke", op, None)); order += 1
            point = time + rng.randint(1, 400)
            heapq.heappush(heap, (point, 1, process, (op, time)))
        elif kind == 1:  # takes effect (or not, for a lost :info)
            op, invoked = data
            info = rng.random() < 0.02
            applied = not info or rng.random() < 0.5
            result = None
            if op["f"] == "append" and applied:
                store[op["key"]] += op["value"]
                history_of[op["key"]].append((time, store[op["key"]], op))
            elif op["f"] == "get":
                result = store[op["key"]]
            done = time + rng.randint(1, 400)
            heapq.heappush(heap, (done, 2, process, (op, invoked, result, info)))
        else:  # completes
            op, invoked, result, info = data
            if info:
                events.append((time, order, process, "info", op, None)); order += 1
                heapq.heappush(heap, (time + rng.randint(1, 100), 0, next_process, None))
                next_process += 1
                continue
            completed_at[id(op)] = time
            value = result if op["f"] == "get" else op["value"]
            events.append((time, order, process, "ok", op, value)); order += 1
            if op["f"] == "get":
                reads.append((len(events) - 1, op["key"], invoked, value))
            heapq.heappush(heap, (time + rng.randint(1, 100), 0, process, None))
    write(prefix + "-ok.edn", events)
    # Corrupt one late read: a value its key held before an append that
    # completed before the read was invoked (so the read must see that
    # append, and strings only grow).
    for index, key, invoked, value in reversed(reads):
        chain = history_of[key]
        stale = None
        for (t, old, _), (_, _, later) in zip(chain, chain[1:]):
            done = completed_at.get(id(later))
            if old and done is not None and done < invoked and value.startswith(old) and old != value:
                stale = old
        if stale is not None and len(stale) > 0:
            time, order_, process, _, op, _ = events[index]
            events[index] = (time, order_, process, "ok", op, stale)
            break
    else:
        sys.exit("no read to corrupt: generate more operations")
    write(prefix + "-bad.edn", events)


def write(path, events):
    with open(path, "w") as out:
        for time, _, process, kind, op, value in sorted(events, key=lambda e: (e[0], e[1])):
            shown = op["value"] if kind != "ok" or op["f"] != "get" else value
            if kind == "invoke" and op["f"] == "get":
                shown = None
            text = "nil" if shown is None else '"' + shown + '"'
            out.write(f'{{:process {process}, :type :{kind}, :f :{op["f"]}, :key "{op["key"]}", :value {text}}}\n')


if __name__ == "__main__":
    main()
