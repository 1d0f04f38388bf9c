// The Go SDK reference for bench/scale: the same three workloads as
// bench/workflows/*.lua, and the driver that runs a workload against any
// worker (this program's or `jorch worker`) and measures it.
//
//	bench-go worker -addr HOST:PORT -tq QUEUE
//	bench-go drive  -addr HOST:PORT -tq QUEUE -type one|seq20|gate -n N -worker-pid PID [-server-pid PID]
//
// drive starts N workflows of type bench_<type>, waits for every result
// (checking each), and prints one line of figures as JSON: workflows/s,
// worker and server CPU ms per workflow (from /proc), worker peak RSS, and
// for the gate workload the worker's RSS per waiting run once all N wait
// at the signal gate (then it signals them and waits for the results).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

func quietLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// ------------------------------------------------------------ workflows

func Echo(ctx context.Context, x string) (string, error) { return x, nil }

func actCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 10 * time.Second})
}

// BenchOne: one activity (bench/workflows/bench_one.lua).
func BenchOne(ctx workflow.Context, x string) (string, error) {
	var r string
	err := workflow.ExecuteActivity(actCtx(ctx), "echo", x).Get(ctx, &r)
	return r, err
}

// BenchSeq20: 20 activities one after another (bench_seq20.lua).
func BenchSeq20(ctx workflow.Context, x string) (string, error) {
	ctx = actCtx(ctx)
	r := x
	for i := 1; i <= 20; i++ {
		if err := workflow.ExecuteActivity(ctx, "echo", fmt.Sprintf("%s-%d", x, i)).Get(ctx, &r); err != nil {
			return "", err
		}
	}
	return r, nil
}

// BenchGate: an orchestrator's shape - three steps, then a wait at an
// approval gate for the signal "proceed" (bench_gate.lua).
func BenchGate(ctx workflow.Context, key string) (string, error) {
	ctx = actCtx(ctx)
	notes := make([]string, 0, 3)
	phase := "EXPLORE"
	for i := 1; i <= 3; i++ {
		var r string
		if err := workflow.ExecuteActivity(ctx, "echo", fmt.Sprintf("%s-%d", key, i)).Get(ctx, &r); err != nil {
			return "", err
		}
		notes = append(notes, r)
	}
	approved := false
	workflow.GetSignalChannel(ctx, "proceed").Receive(ctx, &approved)
	phase = "DONE"
	return notes[2] + ":" + phase, nil
}

func runWorker(c client.Client, tq string) {
	w := worker.New(c, tq, worker.Options{})
	w.RegisterWorkflowWithOptions(BenchOne, workflow.RegisterOptions{Name: "bench_one"})
	w.RegisterWorkflowWithOptions(BenchSeq20, workflow.RegisterOptions{Name: "bench_seq20"})
	w.RegisterWorkflowWithOptions(BenchGate, workflow.RegisterOptions{Name: "bench_gate"})
	w.RegisterActivityWithOptions(Echo, activity.RegisterOptions{Name: "echo"})
	if err := w.Run(worker.InterruptCh()); err != nil {
		fmt.Fprintln(os.Stderr, "bench-go worker:", err)
		os.Exit(1)
	}
}

// ------------------------------------------------------------ /proc

var clkTck = 100.0 // USER_HZ on Linux

func cpuMs(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields after the name: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
	total := 0.0
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseFloat(f[i], 64)
		total += v
	}
	return total * 1000 / clkTck
}

func statusKB(pid int, key string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return v
		}
	}
	return 0
}

// ------------------------------------------------------------ driver

type result struct {
	Worker         string  `json:"worker"`
	Workload       string  `json:"workload"`
	N              int     `json:"n"`
	Seconds        float64 `json:"seconds"`
	PerSecond      float64 `json:"workflows_per_s"`
	WorkerCPUms    float64 `json:"worker_cpu_ms_per_wf"`
	ServerCPUms    float64 `json:"server_cpu_ms_per_wf"`
	WorkerPeakMiB  float64 `json:"worker_peak_rss_mib"`
	WaitingKBPerWf float64 `json:"waiting_kb_per_run,omitempty"`
}

// settle waits until the worker's CPU time stops moving: every run has
// reached its gate and the worker idles.
func settle(pid int) {
	last := cpuMs(pid)
	still := 0
	for still < 4 {
		time.Sleep(500 * time.Millisecond)
		now := cpuMs(pid)
		if now-last < 5 {
			still++
		} else {
			still = 0
		}
		last = now
	}
}

func drive(c client.Client, tq, kind string, n, workerPID, serverPID int, label string) {
	wfType := "bench_" + kind
	prefix := fmt.Sprintf("%s-%s-%d", label, kind, time.Now().UnixNano())
	ctx := context.Background()
	runs := make([]client.WorkflowRun, n)
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}

	rssBefore := statusKB(workerPID, "VmRSS")
	cpu0, scpu0 := cpuMs(workerPID), cpuMs(serverPID)
	t0 := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("%s-%d", prefix, i)
			r, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, wfType, fmt.Sprintf("K%d", i))
			if err != nil {
				fail(fmt.Errorf("starting %s: %w", id, err))
				return
			}
			runs[i] = r
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "bench-go drive:", firstErr)
		os.Exit(1)
	}
	waitingKB := 0.0
	if kind == "gate" {
		settle(workerPID)
		waitingKB = (statusKB(workerPID, "VmRSS") - rssBefore) / float64(n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				if err := c.SignalWorkflow(ctx, runs[i].GetID(), "", "proceed", true); err != nil {
					fail(fmt.Errorf("signalling %s: %w", runs[i].GetID(), err))
				}
			}(i)
		}
		wg.Wait()
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			var out string
			if err := runs[i].Get(ctx, &out); err != nil {
				fail(fmt.Errorf("workflow %s: %w", runs[i].GetID(), err))
				return
			}
			want := map[string]string{"one": fmt.Sprintf("K%d", i), "seq20": fmt.Sprintf("K%d-20", i),
				"gate": fmt.Sprintf("K%d-3:DONE", i)}[kind]
			if out != want {
				fail(fmt.Errorf("workflow %s returned %q, want %q", runs[i].GetID(), out, want))
			}
		}(i)
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "bench-go drive:", firstErr)
		os.Exit(1)
	}
	res := result{Worker: label, Workload: kind, N: n, Seconds: secs, PerSecond: float64(n) / secs,
		WorkerCPUms: (cpuMs(workerPID) - cpu0) / float64(n), WorkerPeakMiB: statusKB(workerPID, "VmHWM") / 1024,
		WaitingKBPerWf: waitingKB}
	if serverPID > 0 {
		res.ServerCPUms = (cpuMs(serverPID) - scpu0) / float64(n)
	}
	if kind == "gate" {
		res.PerSecond = 0 // the gate waits for the driver: its rate says nothing
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench-go worker|drive [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:7233", "Temporal frontend")
	tq := fs.String("tq", "bench", "task queue")
	kind := fs.String("type", "one", "workload: one, seq20 or gate")
	n := fs.Int("n", 100, "workflows")
	wpid := fs.Int("worker-pid", 0, "worker process to measure")
	spid := fs.Int("server-pid", 0, "server process to measure")
	label := fs.String("label", "worker", "name of the worker in the output")
	_ = fs.Parse(os.Args[2:])
	c, err := client.Dial(client.Options{HostPort: *addr, Namespace: "default", Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-go: cannot reach", *addr+":", err)
		os.Exit(3)
	}
	defer c.Close()
	switch os.Args[1] {
	case "worker":
		runWorker(c, *tq)
	case "drive":
		drive(c, *tq, *kind, *n, *wpid, *spid, *label)
	default:
		fmt.Fprintln(os.Stderr, "bench-go: unknown mode", os.Args[1])
		os.Exit(2)
	}
}
