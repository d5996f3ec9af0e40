// Command server serves the example Calculator on the topic "calc" until it
// is interrupted, then shuts down gracefully.
//
//	server [-name NAME] [-trace]
//
// The name, by default the host name, is the one clients give to reach this
// server alone (client -server NAME). -trace prints a line per span of
// OpenTelemetry tracing to standard error, and the metrics when it stops.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/amqprpc/amqprpc/examples/calc"
	"github.com/amqprpc/amqprpc/examples/calc/cmd/internal/demotrace"
	"github.com/amqprpc/amqprpc/otelamqprpc"
	"github.com/amqprpc/amqprpc/runtime"
)

func main() {
	name := flag.String("name", "", "the server's name (default: the host name)")
	tracing := flag.Bool("trace", false, "print each span of OpenTelemetry tracing to standard error, and the metrics when it stops")
	flag.Parse()

	var opts []runtime.ServerOption
	if *name != "" {
		opts = append(opts, runtime.WithServerName(*name))
	}
	var measured otelamqprpc.Option
	if *tracing {
		tp, traced := demotrace.Provider(os.Stderr)
		defer tp.Shutdown(context.Background())
		var printMetrics func()
		measured, printMetrics = demotrace.Meter(os.Stderr)
		defer printMetrics()
		opts = append(opts, runtime.WithServerInterceptors(otelamqprpc.ServerInterceptor(traced, measured)))
	}
	srv := runtime.NewServer(calc.BrokerURL(), calc.Topic, opts...)
	calc.RegisterCalculatorServer(srv, new(calc.Machine))
	if measured != nil {
		if _, err := otelamqprpc.ObserveServer(srv, measured); err != nil {
			log.Fatal(err)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}()

	if err := srv.Serve(); !errors.Is(err, runtime.ErrServerClosed) {
		log.Fatal(err)
	}
}
