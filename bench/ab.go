package main

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// latencyAB measures the sequential latency of amqprpc and baseline from
// one client process, the orchestrator, alternating blocks of calls to one
// and to the other, so that the machine's drift, which on a shared virtual
// machine moves latencies by several percent from one second to the next,
// weighs on both alike.
func latencyAB(topicA, topicB string, d time.Duration) (a, b [3]float64, n int, err error) {
	ca, closeA, err := impls["amqprpc"].dial(brokerURL(), topicA, options{variant: "default"})
	if err != nil {
		return a, b, 0, err
	}
	defer closeA()
	cb, closeB, err := impls["baseline"].dial(brokerURL(), topicB, options{variant: "default"})
	if err != nil {
		return a, b, 0, err
	}
	defer closeB()
	const size = 200
	block := func(c caller, into *[]float64) error {
		for i := range size {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t0 := time.Now()
			err := c(ctx, i)
			el := time.Since(t0)
			cancel()
			if err != nil {
				return err
			}
			if into != nil {
				*into = append(*into, float64(el.Microseconds()))
			}
		}
		return nil
	}
	if err := block(ca, nil); err != nil { // warm up
		return a, b, 0, err
	}
	if err := block(cb, nil); err != nil {
		return a, b, 0, err
	}
	var la, lb []float64
	for end := time.Now().Add(d); time.Now().Before(end); {
		if err := block(ca, &la); err != nil {
			return a, b, 0, err
		}
		if err := block(cb, &lb); err != nil {
			return a, b, 0, err
		}
	}
	return quantiles(la), quantiles(lb), len(la), nil
}

// quantiles returns the 50th, 90th and 99th percentiles of xs.
func quantiles(xs []float64) [3]float64 {
	sort.Float64s(xs)
	q := func(p float64) float64 { return xs[min(len(xs)-1, int(p*float64(len(xs))))] }
	return [3]float64{q(0.50), q(0.90), q(0.99)}
}

func fmtQuantiles(q [3]float64) string {
	return fmt.Sprintf("%s | %s | %s", fmtMicros(q[0]), fmtMicros(q[1]), fmtMicros(q[2]))
}
