#!/usr/bin/env bash
# orchestrate_sim.sh - the workflow's logic through the real scheduler
# (lua/jorch/workflow.lua) with a fake engine and mock activities, in lua5.4.
cd "${JORCH_SOURCE_DIR:-.}" && exec lua5.4 tests/orchestrate/sim.lua
