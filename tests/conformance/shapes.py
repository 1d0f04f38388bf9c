"""The conformance suite's workflow shapes and activities in Python (the
official SDK, sdk-core based), one per tests/conformance/shapes/NAME.lua,
registered under the same names with the same arguments and results."""
import asyncio
from datetime import timedelta
from typing import Optional

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

T = timedelta(seconds=10)


@activity.defn
async def step(tag: str, x: str) -> str:
    return f"{tag}:{x}"


@activity.defn
async def slow(tag: str, seconds: str) -> str:
    await asyncio.sleep(float(seconds))
    return tag


@activity.defn
async def flaky_until(n: str) -> int:
    a = activity.info().attempt
    if a < int(n):
        raise RuntimeError(f"attempt {a} fails on purpose")
    return a


@activity.defn
async def always_fails() -> None:
    raise RuntimeError("always fails")


@activity.defn
async def beating(seconds: str) -> str:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while loop.time() - t0 < float(seconds):
        activity.heartbeat()
        await asyncio.sleep(0.2)
    return "beat"


ACTIVITIES = [step, slow, flaky_until, always_fails, beating]


@workflow.defn(name="sequential")
class Sequential:
    @workflow.run
    async def run(self) -> str:
        a = await workflow.execute_activity("step", args=["a", "1"], start_to_close_timeout=T)
        return await workflow.execute_activity("step", args=["b", a], start_to_close_timeout=T)


@workflow.defn(name="timer")
class Timer:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(0.5)
        return "slept"


@workflow.defn(name="timer_activity")
class TimerActivity:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(0.5)
        return await workflow.execute_activity("step", args=["t", "1"], start_to_close_timeout=T)


@workflow.defn(name="signal_gate")
class SignalGate:
    def __init__(self) -> None:
        self.got: Optional[str] = None

    @workflow.signal
    def go(self, v: str) -> None:
        self.got = v

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.got is not None)
        return await workflow.execute_activity("step", args=["signal", self.got], start_to_close_timeout=T)


@workflow.defn(name="wait_timeout")
class WaitTimeout:
    @workflow.run
    async def run(self) -> bool:
        try:
            await workflow.wait_condition(lambda: False, timeout=0.5)
            return True
        except asyncio.TimeoutError:
            return False


@workflow.defn(name="parallel")
class Parallel:
    @workflow.run
    async def run(self) -> str:
        fs = [workflow.start_activity("slow", args=[f"p{i}", s], start_to_close_timeout=T)
              for i, s in enumerate(["0.1", "1.1", "2.1"], start=1)]
        return ",".join(await asyncio.gather(*fs))


@workflow.defn(name="retry_twice")
class RetryTwice:
    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(
            "flaky_until", args=["3"], start_to_close_timeout=T,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=1.0,
                                     maximum_attempts=5))


@workflow.defn(name="cancel_backoff")
class CancelBackoff:
    @workflow.run
    async def run(self) -> dict:
        rp = RetryPolicy(initial_interval=timedelta(seconds=3), maximum_attempts=5)
        f = workflow.start_activity("always_fails", start_to_close_timeout=T, retry_policy=rp)
        await workflow.sleep(1)
        f.cancel()
        try:
            await f
            cancelled = False
        except BaseException:
            cancelled = True
        r = await workflow.execute_activity("slow", args=["after", "1"], start_to_close_timeout=T, retry_policy=rp)
        return {"cancelled": cancelled, "r": r}


@workflow.defn(name="cancel_running")
class CancelRunning:
    @workflow.run
    async def run(self) -> dict:
        f = workflow.start_activity("beating", args=["20"], start_to_close_timeout=timedelta(seconds=30),
                                    heartbeat_timeout=timedelta(seconds=1),
                                    retry_policy=RetryPolicy(maximum_attempts=1))
        await workflow.sleep(1)
        f.cancel()
        try:
            await f
            cancelled = False
        except BaseException:
            cancelled = True
        await workflow.sleep(3)
        return {"cancelled": cancelled}


@workflow.defn(name="patch")
class Patch:
    @workflow.run
    async def run(self) -> str:
        if workflow.patched("p1"):
            return await workflow.execute_activity("step", args=["patched", "1"], start_to_close_timeout=T)
        return await workflow.execute_activity("step", args=["old", "1"], start_to_close_timeout=T)


@workflow.defn(name="continue_as_new")
class ContinueAsNew:
    @workflow.run
    async def run(self, n: int) -> int:
        if n < 1:
            workflow.continue_as_new(n + 1)
        return n


WORKFLOWS = [Sequential, Timer, TimerActivity, SignalGate, WaitTimeout, Parallel, RetryTwice, CancelBackoff,
             CancelRunning, Patch, ContinueAsNew]
# shape name -> workflow input (a list of arguments)
SHAPES = {"sequential": [], "timer": [], "timer_activity": [], "signal_gate": [], "wait_timeout": [],
          "parallel": [], "retry_twice": [], "cancel_backoff": [], "cancel_running": [], "patch": [],
          "continue_as_new": [0]}
