"""Driver of tests/conformance/run.sh (test-only; needs `pip install temporalio`).

  conform.py run ADDRESS OUTDIR     start a Python worker for shapes.py, run every
                                    shape as py-NAME (Python worker, queue conform-py)
                                    and lua-NAME (jorch worker, queue conform-lua);
                                    write OUTDIR/{py,lua}-NAME.json (history of the
                                    first run, NAME.2.json of the next one) and
                                    OUTDIR/results.json
  conform.py again ADDRESS OUTDIR NAME TAG
                                    run shape NAME once more on the jorch worker only,
                                    as lua-NAME-TAG (a retry after a timing race)
  conform.py replay FILE...         replay jorch-recorded histories with the
                                    Python SDK's Replayer (file name: lua-NAME*.json)
  conform.py compare A.json B.json  the same event types in the same order with the
                                    same key attributes (exit 1 and a diff if not)
"""
import asyncio
import base64
import hashlib
import json
import os
import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# temporalio is imported where it is used: `compare` runs once per shape and
# needs none of it (it takes a second to import).


async def first_task_done(client, wid):
    """Waits until the run's first workflow task completed (a signal sent then
    arrives after it on every backend, so the histories agree)."""
    from temporalio.api.enums.v1 import EventType

    for _ in range(400):
        hist = await client.get_workflow_handle(wid).fetch_history()
        if any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in hist.events):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{wid}: the first workflow task never completed")


async def run_one(client, name, args, prefix, queue, out, tag=""):
    from datetime import timedelta
    wid = f"{prefix}-{name}" + (f"-{tag}" if tag else "")
    memo = None
    if prefix == "lua":
        # the script version, as `jorch start --temporal` records it: a run
        # started without one gets the worker's record (a memo upsert) at
        # its first task, an event the Python version does not have
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shapes", f"{name}.lua")
        with open(path, encoding="utf-8") as f:
            src = f.read()
        memo = {"jorch.script": path, "jorch.script_source": src,
                "jorch.script_sha256": hashlib.sha256(src.encode("utf-8")).hexdigest()}
    h = await client.start_workflow(name, args=args, id=wid, task_queue=queue, memo=memo,
                                    execution_timeout=timedelta(seconds=60))
    if name == "signal_gate":
        await first_task_done(client, wid)
        await h.signal("go", "yes")
    try:
        result = json.dumps(await asyncio.wait_for(h.result(), 40), separators=(",", ":"), sort_keys=True)
    except BaseException as e:  # the suite reports it
        result = f"ERROR {type(e).__name__}: {e}"
    first = await client.get_workflow_handle(wid, run_id=h.first_execution_run_id or h.run_id).fetch_history()
    with open(os.path.join(out, f"{wid}.json"), "w") as f:
        f.write(first.to_json())
    if name == "continue_as_new":
        last = await client.get_workflow_handle(wid).fetch_history()
        with open(os.path.join(out, f"{wid}.2.json"), "w") as f:
            f.write(last.to_json())
    return wid, result


async def again(address, out, name, tag):
    import shapes
    from temporalio.client import Client
    client = await Client.connect(address)
    wid, result = await run_one(client, name, shapes.SHAPES[name], "lua", "conform-lua", out, tag)
    print(result)


async def run(address, out):
    import shapes
    from temporalio.client import Client
    from temporalio.worker import Worker
    client = await Client.connect(address)
    async with Worker(client, task_queue="conform-py", workflows=shapes.WORKFLOWS, activities=shapes.ACTIVITIES):
        jobs = [run_one(client, n, a, p, q, out) for n, a in shapes.SHAPES.items()
                for p, q in (("py", "conform-py"), ("lua", "conform-lua"))]
        results = dict(await asyncio.gather(*jobs))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)


async def replay(files):
    import shapes
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer
    replayer = Replayer(workflows=shapes.WORKFLOWS)
    bad = 0
    for path in files:
        with open(path) as f:
            text = f.read()
        try:
            await replayer.replay_workflow(WorkflowHistory.from_json(os.path.basename(path), text))
            print(f"ok   {os.path.basename(path)} replays with the Python SDK's Replayer")
        except Exception as e:
            bad += 1
            print(f"FAIL {os.path.basename(path)} does not replay with the Python SDK's Replayer: {e}")
    return bad


def payload_values(ps):
    out = []
    for p in (ps or {}).get("payloads", []):
        d = base64.b64decode(p.get("data", "") or "")
        try:
            out.append(json.loads(d) if d else None)
        except ValueError:
            out.append(d.decode("utf-8", "replace"))
    return out


def attrs_of(e):
    for k, v in e.items():
        if k.endswith("EventAttributes"):
            return v
    return {}


def key(e):
    """The event type and the attributes that must agree between backends."""
    t = e["eventType"].replace("EVENT_TYPE_", "")
    a = attrs_of(e)
    if t == "WORKFLOW_EXECUTION_STARTED":
        return [t, a.get("workflowType", {}).get("name"), payload_values(a.get("input"))]
    if t == "ACTIVITY_TASK_SCHEDULED":
        return [t, a.get("activityId"), a.get("activityType", {}).get("name"), payload_values(a.get("input"))]
    if t == "ACTIVITY_TASK_STARTED":
        return [t, a.get("scheduledEventId"), a.get("attempt")]
    if t == "ACTIVITY_TASK_COMPLETED":
        return [t, a.get("scheduledEventId"), payload_values(a.get("result"))]
    if t in ("ACTIVITY_TASK_FAILED", "ACTIVITY_TASK_TIMED_OUT", "ACTIVITY_TASK_CANCEL_REQUESTED"):
        return [t, a.get("scheduledEventId")]
    if t == "ACTIVITY_TASK_CANCELED":
        return [t, a.get("scheduledEventId"), a.get("latestCancelRequestedEventId")]
    if t == "TIMER_STARTED":
        return [t, a.get("timerId"), a.get("startToFireTimeout")]
    if t in ("TIMER_FIRED", "TIMER_CANCELED"):
        return [t, a.get("timerId")]
    if t == "MARKER_RECORDED":
        return [t, a.get("markerName"), sorted((a.get("details") or {}).keys())]
    if t == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
        f = (a.get("searchAttributes") or {}).get("indexedFields") or {}
        return [t, {k: payload_values({"payloads": [v]}) for k, v in sorted(f.items())}]
    if t == "WORKFLOW_EXECUTION_SIGNALED":
        return [t, a.get("signalName"), payload_values(a.get("input"))]
    if t == "WORKFLOW_EXECUTION_COMPLETED":
        return [t, payload_values(a.get("result"))]
    if t == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW":
        return [t, payload_values(a.get("input"))]
    if t == "WORKFLOW_TASK_COMPLETED":
        md = a.get("sdkMetadata") or {}
        return [t, sorted(md.get("langUsedFlags", [])), sorted(md.get("coreUsedFlags", []))]
    return [t]


def compare(pa, pb):
    ea = [key(e) for e in json.load(open(pa))["events"]]
    eb = [key(e) for e in json.load(open(pb))["events"]]
    if ea == eb:
        return 0
    print(f"{os.path.basename(pa)} and {os.path.basename(pb)} differ:")
    for i in range(max(len(ea), len(eb))):
        x = json.dumps(ea[i]) if i < len(ea) else "-"
        y = json.dumps(eb[i]) if i < len(eb) else "-"
        print(f"  {'  ' if x == y else '!!'} {i + 1:3} {x}\n         {'' if x == y else y}".rstrip())
    return 1


def leave(code):
    """Exits without the interpreter's finalization: the SDK's native
    threads can still hold the GIL machinery then, and Python aborts
    ("PyGILState_Release ... finalizing") after all the work is done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "run":
        asyncio.run(run(sys.argv[2], sys.argv[3]))
        leave(0)
    elif len(sys.argv) == 6 and sys.argv[1] == "again":
        asyncio.run(again(*sys.argv[2:6]))
        leave(0)
    elif len(sys.argv) >= 3 and sys.argv[1] == "replay":
        leave(1 if asyncio.run(replay(sys.argv[2:])) else 0)
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
